"""The local control plane behind ``roost dev``: real etcd, kube-apiserver and kube-controller-manager."""
