# Relay on AWS: a VPC, EKS with Dapr and the AWS Load Balancer Controller, ElastiCache Redis (cluster mode, TLS,
# AUTH token in Secrets Manager), MSK for the Kafka firehose, the public certificate and DNS name, ECR repositories
# for the images, Secrets Manager entries for the keys (their values are put there by hand, never in this state),
# and optionally functions on Lambda: a .zip of your own, and Relay.Functions' archive function from its image.
# docs/deploy.md walks through it.

locals {
  tags = { "app.kubernetes.io/part-of" = "relay", "relay/deployment" = var.name }

  sizes = {
    small  = { nodes = { min = 3, desired = 3, max = 6 }, node_type = "c7i.xlarge", redis = "cache.r7g.large", shards = 1, kafka = "kafka.m7g.large" }
    medium = { nodes = { min = 4, desired = 6, max = 12 }, node_type = "c7i.2xlarge", redis = "cache.r7g.xlarge", shards = 3, kafka = "kafka.m7g.large" }
    large  = { nodes = { min = 10, desired = 16, max = 40 }, node_type = "c7i.4xlarge", redis = "cache.r7g.2xlarge", shards = 6, kafka = "kafka.m7g.xlarge" }
  }
  size = local.sizes[var.size]

  # The cluster's images, and relay-functions for the archive function on Lambda.
  images = ["relay-auth", "relay-routing", "relay-fanout", "relay-ingress", "relay-functions"]
}

module "vpc" {
  source             = "../../modules/vpc"
  name               = var.name
  zones              = 3
  single_nat_gateway = var.size == "small"
  tags               = local.tags
}

module "eks" {
  source              = "../../modules/eks"
  name                = var.name
  vpc_id              = module.vpc.vpc_id
  subnet_ids          = module.vpc.private_subnet_ids
  public_access_cidrs = var.kubernetes_api_cidrs
  node_instance_types = [local.size.node_type]
  node_count          = local.size.nodes
  tags                = local.tags
}

module "redis" {
  source                    = "../../modules/redis"
  name                      = var.name
  vpc_id                    = module.vpc.vpc_id
  subnet_ids                = module.vpc.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
  node_type                 = local.size.redis
  shards                    = local.size.shards
  replicas_per_shard        = 1
  tags                      = local.tags
}

module "msk" {
  source                    = "../../modules/msk"
  name                      = var.name
  vpc_id                    = module.vpc.vpc_id
  subnet_ids                = module.vpc.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
  broker_instance_type      = local.size.kafka
  tags                      = local.tags
}

module "edge" {
  source      = "../../modules/edge"
  domain_name = var.domain_name
  zone_id     = var.zone_id
  nlb_name    = var.public_nlb_ready ? "${var.name}-public" : null
  tags        = local.tags
}

resource "aws_ecr_repository" "images" {
  for_each             = toset(local.images)
  name                 = each.value
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
}

# Containers for the keys, without values: `aws secretsmanager put-secret-value` puts them there (docs/deploy.md), so
# they never pass through Terraform's state.
resource "aws_secretsmanager_secret" "signing_key" {
  name        = "${var.name}/signing-key"
  description = "The auth service's ES256 signing key, PKCS#8 PEM (relay-signing-key)."
}

resource "aws_secretsmanager_secret" "app_keys" {
  name        = "${var.name}/app-keys"
  description = "The first app's id, key id and key secret as JSON {app-id, key-id, key-secret} (relay-app-keys)."
}

module "webhook" {
  count                = var.webhook_package_path == null ? 0 : 1
  source               = "../../modules/lambda"
  function_name        = "${var.name}-webhook"
  package_path         = coalesce(var.webhook_package_path, "unused.zip")
  handler              = "bootstrap"
  environment          = { RELAY_URL = module.edge.https_url, RELAY_KEY_SECRET_ARN = aws_secretsmanager_secret.app_keys.arn }
  readable_secret_arns = [aws_secretsmanager_secret.app_keys.arn]
  tags                 = local.tags
}

# Relay.Functions' archive function (docs/functions.md) on Lambda from its image (services/Relay.Functions/Dockerfile,
# pushed to the relay-functions repository with the others), writing the archive's objects to a bucket of its own
# under the archive's default prefix. Set functions_image_tag once the image is pushed; null deploys none.
resource "aws_s3_bucket" "archive" {
  count         = var.functions_image_tag == null ? 0 : 1
  bucket_prefix = "${substr(var.name, 0, 28)}-archive-"
}

resource "aws_s3_bucket_public_access_block" "archive" {
  count                   = var.functions_image_tag == null ? 0 : 1
  bucket                  = aws_s3_bucket.archive[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

module "archive" {
  count         = var.functions_image_tag == null ? 0 : 1
  source        = "../../modules/lambda"
  function_name = "${var.name}-archive"
  package_type  = "Image"
  image_uri     = "${aws_ecr_repository.images["relay-functions"].repository_url}:${coalesce(var.functions_image_tag, "unset")}"
  architecture  = var.functions_architecture
  memory_mb     = 512
  timeout_s     = 30
  environment = {
    Relay__Functions__Archive__Bucket = aws_s3_bucket.archive[0].id
    Relay__Functions__Archive__Region = var.region
  }
  writable_s3_arns = ["${aws_s3_bucket.archive[0].arn}/relay/*"]
  tags             = local.tags
}
