terraform {
  required_version = ">= 1.6"
  required_providers {
    aws  = { source = "hashicorp/aws", version = "~> 5.80" }
    helm = { source = "hashicorp/helm", version = "~> 2.16" }
    tls  = { source = "hashicorp/tls", version = "~> 4.0" }
  }
}
