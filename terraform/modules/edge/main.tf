# The public side: an ACM certificate for the domain (validated through Route 53), which the NLB's TLS listener
# uses (the prod overlay's aws-load-balancer-ssl-cert), and the domain's alias record to that NLB once it exists.

resource "aws_acm_certificate" "this" {
  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = var.tags
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = {
    for o in aws_acm_certificate.this.domain_validation_options : o.domain_name => o
  }
  zone_id         = var.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  certificate_arn         = aws_acm_certificate.this.arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}

data "aws_lb" "public" {
  count = var.nlb_name == null ? 0 : 1
  name  = var.nlb_name
}

resource "aws_route53_record" "public" {
  count   = var.nlb_name == null ? 0 : 1
  zone_id = var.zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = data.aws_lb.public[0].dns_name
    zone_id                = data.aws_lb.public[0].zone_id
    evaluate_target_health = true
  }
}
