variable "name" {
  type        = string
  description = "The cluster's name (the VPC's subnets are tagged for it)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes version (major.minor)."
  default     = "1.31"
  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version: 1.28 or later, as major.minor (e.g. 1.31)."
  }
}

variable "vpc_id" {
  type        = string
  description = "The VPC the cluster runs in."
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id: a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the control plane's interfaces and the nodes, in at least two zones."
  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids: at least two subnet ids (subnet-...)."
  }
}

variable "public_access_cidrs" {
  type        = list(string)
  description = "Who may reach the Kubernetes API from the internet (narrow it to your office or VPN)."
  default     = ["0.0.0.0/0"]
  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "public_access_cidrs: IPv4 CIDRs."
  }
}

variable "node_instance_types" {
  type        = list(string)
  description = "Instance types of the node group (routing wants whole cores: compute-optimised, e.g. c7i.xlarge)."
  default     = ["c7i.xlarge"]
  validation {
    condition     = length(var.node_instance_types) > 0 && alltrue([for t in var.node_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "node_instance_types: one or more EC2 instance types such as c7i.xlarge."
  }
}

variable "node_count" {
  type = object({
    min     = number
    desired = number
    max     = number
  })
  description = "Nodes in the group: the autoscaler keeps between min and max; desired is the start."
  default     = { min = 3, desired = 3, max = 10 }
  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.desired && var.node_count.desired <= var.node_count.max
    error_message = "node_count: 1 <= min <= desired <= max."
  }
}

variable "dapr_version" {
  type        = string
  description = "The Dapr Helm chart's version (the control plane: operator, sidecar injector, sentry, placement)."
  default     = "1.14.4"
  validation {
    condition     = can(regex("^1\\.[0-9]+\\.[0-9]+$", var.dapr_version))
    error_message = "dapr_version: a 1.x.y version."
  }
}

variable "lb_controller_version" {
  type        = string
  description = "The AWS Load Balancer Controller Helm chart's version (it makes the NLB from the relay-ingress-public Service)."
  default     = "1.10.1"
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.lb_controller_version))
    error_message = "lb_controller_version: x.y.z."
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
