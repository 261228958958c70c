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

output "mqtt_urls" {
  description = "Relay's MQTT endpoints: over TLS on 8883, and over secure WebSocket at /mqtt."
  value       = ["mqtts://${var.domain_name}:8883", "wss://${var.domain_name}/mqtt"]
}
