variable "function_name" {
  type        = string
  description = "The function's name (also its role's and log group's)."
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.function_name))
    error_message = "function_name: 1-56 letters, digits, dashes and underscores."
  }
}

variable "package_path" {
  type        = string
  description = "Path of the deployment package (.zip) on the machine running terraform."
  validation {
    condition     = endswith(var.package_path, ".zip")
    error_message = "package_path: a .zip file."
  }
}

variable "handler" {
  type        = string
  description = "The handler (.NET: Assembly::Namespace.Class::Method; for a native AOT bootstrap, anything)."
  validation {
    condition     = length(var.handler) > 0 && length(var.handler) <= 128
    error_message = "handler: 1-128 characters."
  }
}

variable "runtime" {
  type        = string
  description = "Lambda runtime: dotnet8, or provided.al2023 for a native AOT .NET 10 build."
  default     = "provided.al2023"
  validation {
    condition     = contains(["dotnet8", "provided.al2023"], var.runtime)
    error_message = "runtime: dotnet8 or provided.al2023."
  }
}

variable "architecture" {
  type        = string
  description = "CPU architecture of the package."
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture: arm64 or x86_64."
  }
}

variable "memory_mb" {
  type        = number
  description = "Memory (and, in proportion, CPU) of the function, MB."
  default     = 256
  validation {
    condition     = var.memory_mb >= 128 && var.memory_mb <= 10240
    error_message = "memory_mb: 128 to 10240."
  }
}

variable "timeout_s" {
  type        = number
  description = "Longest run, seconds."
  default     = 10
  validation {
    condition     = var.timeout_s >= 1 && var.timeout_s <= 900
    error_message = "timeout_s: 1 to 900."
  }
}

variable "environment" {
  type        = map(string)
  description = "Environment variables (never secrets: name a secret in readable_secret_arns and read it at start)."
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.environment : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "environment: names of letters, digits and underscores, not starting with a digit."
  }
}

variable "readable_secret_arns" {
  type        = list(string)
  description = "The only Secrets Manager secrets the function may read (e.g. the Relay app key it publishes with)."
  default     = []
  validation {
    condition     = alltrue([for a in var.readable_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:", a))])
    error_message = "readable_secret_arns: Secrets Manager secret ARNs."
  }
}

variable "vpc_subnet_ids" {
  type        = list(string)
  description = "Private subnets to run in, to reach Relay's in-cluster endpoints; empty runs outside the VPC."
  default     = []
  validation {
    condition     = alltrue([for s in var.vpc_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "vpc_subnet_ids: subnet ids (subnet-...)."
  }
}

variable "vpc_security_group_ids" {
  type        = list(string)
  description = "Security groups of the function's network interfaces (with vpc_subnet_ids)."
  default     = []
  validation {
    condition     = alltrue([for s in var.vpc_security_group_ids : can(regex("^sg-[0-9a-f]+$", s))])
    error_message = "vpc_security_group_ids: security group ids (sg-...)."
  }
}

variable "log_retention_days" {
  type        = number
  description = "How long the function's logs are kept."
  default     = 14
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365], var.log_retention_days)
    error_message = "log_retention_days: one of CloudWatch's values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365)."
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
