# A function that works with Relay (e.g. a webhook that publishes over Relay's HTTP API, or Relay.Functions' archive
# function), with a role that may do only this: write its own log group, read the secrets it is given, write the S3
# prefixes it is given, and (in a VPC) manage its network interfaces. Deployed from a .zip (package_type = "Zip") or
# a container image in ECR (package_type = "Image": image_uri, or a repository this module creates and image_tag).

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  in_vpc = length(var.vpc_subnet_ids) > 0
  zip    = var.package_type == "Zip"

  # The image Lambda runs: from the repository made here (tagged image_tag), or the one given.
  image_uri = local.zip ? null : var.create_repository ? "${aws_ecr_repository.this[0].repository_url}:${coalesce(var.image_tag, "unset")}" : var.image_uri
}

# A repository for the function's image, when the caller has none: push the image (docs/functions.md) before the
# function is created, so a first apply makes the repository alone (-target) or the caller passes image_uri.
resource "aws_ecr_repository" "this" {
  count                = var.create_repository ? 1 : 0
  name                 = lower(var.function_name)
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  tags = var.tags
}

# Lambda pulls the image as the service itself: only this account's function of this name may.
resource "aws_ecr_repository_policy" "this" {
  count      = var.create_repository ? 1 : 0
  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "LambdaPull"
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      Condition = {
        StringLike = { "aws:sourceArn" = "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${var.function_name}*" }
      }
    }]
  })
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_iam_role" "this" {
  name = "${var.function_name}-lambda"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name = "least-privilege"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.this.arn}:*"
      }],
      length(var.readable_secret_arns) == 0 ? [] : [{
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = var.readable_secret_arns
      }],
      length(var.writable_s3_arns) == 0 ? [] : [{
        Effect   = "Allow"
        Action   = ["s3:PutObject"]
        Resource = var.writable_s3_arns
      }],
    )
  })
}

# Lambda's own managed policy for network interfaces, only for a function in a VPC.
resource "aws_iam_role_policy_attachment" "vpc" {
  count      = local.in_vpc ? 1 : 0
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_lambda_function" "this" {
  function_name = var.function_name
  role          = aws_iam_role.this.arn
  package_type  = var.package_type
  architectures = [var.architecture]
  memory_size   = var.memory_mb
  timeout       = var.timeout_s

  # A .zip: its file, hash, handler and runtime. An image brings its own entry point and runtime.
  filename         = local.zip ? var.package_path : null
  source_code_hash = local.zip ? filebase64sha256(var.package_path) : null
  handler          = local.zip ? var.handler : null
  runtime          = local.zip ? var.runtime : null
  image_uri        = local.image_uri

  environment {
    variables = var.environment
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = var.vpc_security_group_ids
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tags       = var.tags
  depends_on = [aws_iam_role_policy.this, aws_ecr_repository_policy.this]

  lifecycle {
    precondition {
      condition     = !local.zip || (var.package_path != null && var.handler != null)
      error_message = "package_type \"Zip\" needs package_path and handler."
    }
    precondition {
      condition     = local.zip ? (var.image_uri == null && !var.create_repository) : ((var.image_uri != null) != var.create_repository)
      error_message = "package_type \"Image\" needs either image_uri or create_repository = true (with image_tag), not both; a .zip takes neither."
    }
    precondition {
      condition     = !var.create_repository || var.image_tag != null
      error_message = "create_repository = true needs image_tag (the tag pushed to the repository)."
    }
  }
}
