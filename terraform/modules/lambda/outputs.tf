output "function_arn" {
  description = "The function's ARN."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "The function's execution role."
  value       = aws_iam_role.this.arn
}

output "repository_url" {
  description = "With create_repository: the ECR repository to push the function's image to (docker push REPOSITORY_URL:image_tag); null otherwise."
  value       = var.create_repository ? aws_ecr_repository.this[0].repository_url : null
}

output "image_uri" {
  description = "The image the function runs (package_type Image); null for a .zip."
  value       = local.image_uri
}
