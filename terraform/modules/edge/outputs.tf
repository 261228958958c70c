output "certificate_arn" {
  description = "The validated certificate (service.beta.kubernetes.io/aws-load-balancer-ssl-cert in the prod overlay)."
  value       = aws_acm_certificate_validation.this.certificate_arn
}

output "https_url" {
  description = "Relay's HTTP API."
  value       = "https://${var.domain_name}"
}

output "wss_url" {
  description = "Relay's realtime endpoint."
  value       = "wss://${var.domain_name}/v1/realtime"
}
