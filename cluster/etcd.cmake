# etcd v3 client (cluster/etcd.c): filled in by its author
