output "configuration_endpoint" {
  description = "host:port of the cluster's configuration endpoint (Relay__Redis__Endpoint, with Relay__Redis__Tls=true and the token as Relay__Redis__Password)."
  value       = "${aws_elasticache_replication_group.this.configuration_endpoint_address}:6379"
}

output "auth_token_secret_arn" {
  description = "The Secrets Manager secret holding the AUTH token (Relay__Redis__Password)."
  value       = aws_secretsmanager_secret.auth.arn
}
