# JetStream write log (cluster/log.c): filled in by its author
