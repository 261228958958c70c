variable "name" {
  type        = string
  description = "Name prefix of every resource (also the EKS cluster name the subnets are tagged for)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "cidr" {
  type        = string
  description = "The VPC's IPv4 range; each zone gets a public and a private /20 out of it."
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 16
    error_message = "cidr: an IPv4 CIDR of /16 or larger (six /20 subnets must fit)."
  }
}

variable "zones" {
  type        = number
  description = "How many availability zones to spread over (2 or 3; NLB, EKS, ElastiCache and MSK each want at least 2)."
  default     = 3
  validation {
    condition     = var.zones >= 2 && var.zones <= 3
    error_message = "zones: 2 or 3."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all zones (cheaper; a zone outage cuts the others' egress) instead of one per zone."
  default     = false
  validation {
    condition     = var.single_nat_gateway == true || var.single_nat_gateway == false
    error_message = "single_nat_gateway: true or false."
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
