output "https_url" {
  description = "Relay's public HTTP API."
  value       = module.edge.https_url
}

output "wss_url" {
  description = "Relay's public realtime endpoint."
  value       = module.edge.wss_url
}

output "mqtt_urls" {
  description = "Relay's MQTT endpoints (mqtts:// on 8883, wss:// at /mqtt)."
  value       = module.edge.mqtt_urls
}

output "jwks_url" {
  description = "The public half of the token signing key, for services that check Relay's tokens."
  value       = "${module.edge.https_url}/.well-known/jwks.json"
}

output "collector_endpoint" {
  description = "The OpenTelemetry Collector's OTLP endpoint inside the cluster (HTTP/protobuf, what Relay sends; infra/k8s/base/otel-collector.yaml)."
  value       = "http://otel-collector.relay.svc.cluster.local:4318"
}

output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this>."
  value       = module.eks.cluster_name
}

output "certificate_arn" {
  description = "Put in infra/k8s/overlays/prod/production.yaml (aws-load-balancer-ssl-cert)."
  value       = module.edge.certificate_arn
}

output "redis_configuration_endpoint" {
  description = "Put in the prod overlay's relay-endpoints (redis)."
  value       = module.redis.configuration_endpoint
}

output "redis_auth_token_secret_arn" {
  description = "Read into the relay-redis Secret (auth-token)."
  value       = module.redis.auth_token_secret_arn
}

output "kafka_bootstrap_brokers" {
  description = "Put in the prod overlay's relay-endpoints (kafka)."
  value       = module.msk.bootstrap_brokers
}

output "image_repositories" {
  description = "ECR repositories to push the images to and to name in the prod overlay."
  value       = { for k, r in aws_ecr_repository.images : k => r.repository_url }
}

output "secret_arns" {
  description = "Secrets Manager entries to fill by hand (signing key, app keys)."
  value       = { signing_key = aws_secretsmanager_secret.signing_key.arn, app_keys = aws_secretsmanager_secret.app_keys.arn }
}

output "archive_function_arn" {
  description = "The archive function (with functions_image_tag): an after-publish target lambda:<this> (docs/functions.md)."
  value       = var.functions_image_tag == null ? null : module.archive[0].function_arn
}

output "archive_bucket" {
  description = "The bucket the archive function writes to, under relay/ (with functions_image_tag)."
  value       = var.functions_image_tag == null ? null : aws_s3_bucket.archive[0].id
}
