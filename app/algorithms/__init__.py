"""Running participants' algorithm containers: the container runtime (podman or docker),
size-capped output volumes and the store of loaded images."""
