variable "domain_name" {
  type        = string
  description = "The public name clients use (https://NAME, wss://NAME/v1/realtime)."
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name: a lower-case DNS name such as relay.example.com."
  }
}

variable "zone_id" {
  type        = string
  description = "The Route 53 public hosted zone that holds domain_name."
  validation {
    condition     = can(regex("^Z[A-Z0-9]+$", var.zone_id))
    error_message = "zone_id: a Route 53 hosted zone id (Z...)."
  }
}

variable "nlb_name" {
  type        = string
  description = "Name of the NLB the AWS Load Balancer Controller made for relay-ingress-public (its aws-load-balancer-name annotation); null until it exists, then the DNS record is made."
  default     = null
  validation {
    condition     = var.nlb_name == null || can(regex("^[A-Za-z0-9-]{1,32}$", var.nlb_name))
    error_message = "nlb_name: null, or a load balancer name of 1-32 letters, digits and dashes."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "tags: keys up to 128 characters, values up to 256."
  }
}
