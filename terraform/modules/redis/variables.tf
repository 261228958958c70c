variable "name" {
  type        = string
  description = "Name prefix of every resource."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "vpc_id" {
  type        = string
  description = "The VPC to run in."
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id: a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets, in at least two zones."
  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids: at least two subnet ids (subnet-...)."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups whose members may connect (the EKS cluster's)."
  validation {
    condition     = length(var.client_security_group_ids) > 0 && alltrue([for s in var.client_security_group_ids : can(regex("^sg-[0-9a-f]+$", s))])
    error_message = "client_security_group_ids: one or more security group ids (sg-...)."
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


variable "node_type" {
  type        = string
  description = "ElastiCache node type of every shard's primary and replicas (cache.r7g.large holds ~13 GiB)."
  default     = "cache.r7g.large"
  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "node_type: an ElastiCache node type such as cache.r7g.large."
  }
}

variable "shards" {
  type        = number
  description = "Cluster-mode shards (node groups). Relay spreads channels over hash slots, so throughput grows with shards."
  default     = 2
  validation {
    condition     = var.shards >= 1 && var.shards <= 500
    error_message = "shards: 1 to 500."
  }
}

variable "replicas_per_shard" {
  type        = number
  description = "Replicas per shard; at least 1 for automatic failover (Relay rides through one: docs/distributed.md)."
  default     = 1
  validation {
    condition     = var.replicas_per_shard >= 0 && var.replicas_per_shard <= 5
    error_message = "replicas_per_shard: 0 to 5."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version."
  default     = "7.1"
  validation {
    condition     = can(regex("^7\\.[0-9]+$", var.engine_version))
    error_message = "engine_version: 7.x (Relay's Lua scripts and the cluster client need Redis 7)."
  }
}
