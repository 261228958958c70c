variable "function_name" {
  type        = string
  description = "The function's name (also its role's and log group's)."
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.function_name))
    error_message = "function_name: 1-56 letters, digits, dashes and underscores."
  }
}

variable "package_type" {
  type        = string
  description = "How the code is deployed: Zip (package_path, handler, runtime) or Image (a container image in ECR: image_uri, or create_repository with image_tag)."
  default     = "Zip"
  validation {
    condition     = contains(["Zip", "Image"], var.package_type)
    error_message = "package_type: Zip or Image."
  }
}

variable "package_path" {
  type        = string
  description = "With package_type Zip: path of the deployment package (.zip) on the machine running terraform."
  default     = null
  validation {
    condition     = var.package_path == null || endswith(coalesce(var.package_path, "x.zip"), ".zip")
    error_message = "package_path: null or a .zip file."
  }
}

variable "handler" {
  type        = string
  description = "With package_type Zip: the handler (.NET: Assembly::Namespace.Class::Method; for a native AOT bootstrap, anything)."
  default     = null
  validation {
    condition     = var.handler == null || (length(coalesce(var.handler, "x")) > 0 && length(coalesce(var.handler, "x")) <= 128)
    error_message = "handler: null or 1-128 characters."
  }
}

variable "image_uri" {
  type        = string
  description = "With package_type Image: the image in a private ECR repository of this account and region, by tag or digest (e.g. services/Relay.Functions/Dockerfile's image); leave null with create_repository."
  default     = null
  validation {
    condition     = var.image_uri == null || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]{1,128}|@sha256:[0-9a-f]{64})$", coalesce(var.image_uri, "x")))
    error_message = "image_uri: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG (or @sha256:DIGEST); Lambda runs images from private ECR only."
  }
}

variable "create_repository" {
  type        = bool
  description = "With package_type Image: create an ECR repository named after the function (lower case) that Lambda may pull from, and run its image_tag."
  default     = false
  validation {
    condition     = var.create_repository != null
    error_message = "create_repository: true or false."
  }
}

variable "image_tag" {
  type        = string
  description = "With create_repository: the tag of the pushed image the function runs (the repository's tags are immutable)."
  default     = null
  validation {
    condition     = var.image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", coalesce(var.image_tag, "x")))
    error_message = "image_tag: null or a Docker tag (letters, digits, _, . and -, up to 128)."
  }
}

variable "runtime" {
  type        = string
  description = "With package_type Zip: the Lambda runtime, dotnet8, or provided.al2023 for a native AOT .NET 10 build."
  default     = "provided.al2023"
  validation {
    condition     = contains(["dotnet8", "provided.al2023"], var.runtime)
    error_message = "runtime: dotnet8 or provided.al2023."
  }
}

variable "architecture" {
  type        = string
  description = "CPU architecture of the package or image (an image built on x86 machines without --platform is x86_64)."
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

variable "writable_s3_arns" {
  type        = list(string)
  description = "The only S3 objects the function may write (s3:PutObject), as ARNs with a wildcard (e.g. the archive bucket's prefix: arn:aws:s3:::BUCKET/relay/*)."
  default     = []
  validation {
    condition     = alltrue([for a in var.writable_s3_arns : can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$", a))])
    error_message = "writable_s3_arns: S3 object ARNs (arn:aws:s3:::BUCKET/PREFIX*), never a whole bucket's ARN."
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
