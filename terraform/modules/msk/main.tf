# MSK for the firehose (every sequenced message to a topic) and ingest: one broker per subnet's zone, TLS between
# brokers, encrypted at rest. Clients may use TLS (9094) or plaintext inside the VPC (9092): Relay's Kafka settings
# (Relay:Kafka) have no TLS option yet, so the services use the plaintext listener, reachable only from the cluster's
# security group.

resource "aws_security_group" "this" {
  name        = "${var.name}-kafka"
  description = "Kafka from the cluster's nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9094
  description                  = "Kafka, plaintext (9092) and TLS (9094)"
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-kafka"
  kafka_versions = [var.kafka_version]
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=${min(3, length(var.subnet_ids))}
    min.insync.replicas=${min(2, length(var.subnet_ids))}
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = length(var.subnet_ids)

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.this.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gib
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }

  tags = var.tags
}
