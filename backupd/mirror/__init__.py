"""The off-site mirror: a copy of the local borg repository in a cloud bucket, made with rclone."""
