variable "region" {
  type        = string
  description = "AWS region to deploy to."
  default     = "eu-west-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region: an AWS region such as eu-west-1."
  }
}

variable "name" {
  type        = string
  description = "Name of this deployment: prefix of every resource, and the EKS cluster's name."
  default     = "relay"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "domain_name" {
  type        = string
  description = "Public name of Relay (https://NAME, wss://NAME/v1/realtime), in zone_id's zone."
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name: a lower-case DNS name such as relay.example.com."
  }
}

variable "zone_id" {
  type        = string
  description = "Route 53 public hosted zone id for domain_name."
  validation {
    condition     = can(regex("^Z[A-Z0-9]+$", var.zone_id))
    error_message = "zone_id: a Route 53 hosted zone id (Z...)."
  }
}

variable "size" {
  type        = string
  description = "small (~10k connections), medium (~100k) or large (~1M): node, Redis and Kafka sizes (docs/deploy.md prices each)."
  default     = "small"
  validation {
    condition     = contains(["small", "medium", "large"], var.size)
    error_message = "size: small, medium or large."
  }
}

variable "public_nlb_ready" {
  type        = bool
  description = "Set true after `kubectl apply -k infra/k8s/overlays/prod` made the public NLB: the DNS record then points at it."
  default     = false
  validation {
    condition     = var.public_nlb_ready == true || var.public_nlb_ready == false
    error_message = "public_nlb_ready: true or false."
  }
}

variable "kubernetes_api_cidrs" {
  type        = list(string)
  description = "Who may reach the Kubernetes API (narrow it to your office or VPN)."
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.kubernetes_api_cidrs : can(cidrhost(c, 0))])
    error_message = "kubernetes_api_cidrs: IPv4 CIDRs."
  }
}

variable "webhook_package_path" {
  type        = string
  description = "A .zip of a function that publishes to Relay (e.g. a webhook receiver); null deploys no function."
  default     = null
  validation {
    condition     = var.webhook_package_path == null || endswith(coalesce(var.webhook_package_path, "x.zip"), ".zip")
    error_message = "webhook_package_path: null or a .zip file."
  }
}

variable "functions_image_tag" {
  type        = string
  description = "Tag of the Relay.Functions image pushed to the relay-functions repository, deployed as the archive function on Lambda; null deploys none."
  default     = null
  validation {
    condition     = var.functions_image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", coalesce(var.functions_image_tag, "x")))
    error_message = "functions_image_tag: null or a Docker tag (letters, digits, _, . and -, up to 128)."
  }
}

variable "functions_architecture" {
  type        = string
  description = "CPU architecture the Relay.Functions image was built for (docker build --platform linux/amd64 is x86_64, linux/arm64 is arm64)."
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.functions_architecture)
    error_message = "functions_architecture: x86_64 or arm64."
  }
}
