output "backend_config" {
  description = "Contents for envs/ENV.backend.hcl of the stacks (replace KEY)."
  value       = module.state_backend.backend_config
}

output "bucket" {
  description = "State bucket."
  value       = module.state_backend.bucket
}

output "lock_table" {
  description = "Lock table."
  value       = module.state_backend.lock_table
}
