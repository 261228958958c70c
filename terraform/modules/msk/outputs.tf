output "bootstrap_brokers" {
  description = "Plaintext bootstrap brokers inside the VPC (Relay__Kafka__BootstrapServers: Relay's Kafka client has no TLS setting yet)."
  value       = aws_msk_cluster.this.bootstrap_brokers
}

output "bootstrap_brokers_tls" {
  description = "TLS bootstrap brokers, for clients that speak TLS."
  value       = aws_msk_cluster.this.bootstrap_brokers_tls
}

output "cluster_arn" {
  description = "The MSK cluster's ARN."
  value       = aws_msk_cluster.this.arn
}
