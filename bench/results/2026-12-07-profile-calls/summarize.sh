#!/bin/bash
# per profile: dso split (self) and the inclusive share of the frames that name a step
D=${WORK:-${TMPDIR:-/tmp}/p16}; OUT=${1:-$D/out}; mkdir -p $OUT
for f in $D/srv-*.data $D/cli-*.data; do
  t=$(basename $f .data)
  perf report -i $f --no-children --sort dso --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12 > $OUT/$t-dso.txt
  perf report -i $f --children --sort sym --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" > $OUT/$t-children-all.txt
  grep -E "\] (worker_main|on_accept|on_step|decode_first|auth_check|search_search|qv_query_run|qv_store_read_begin|mdb_txn_begin|mdb_txn_reset|faiss_Index_search_with_params|faiss::IndexIVF::search$|faiss::IndexFlat::search|gather|qv_store_attrs_get|rpc_finish|rpc_finish_encoded|srv_encode\w*|encode_\w*|protobuf_c_message_pack|protobuf_c_message_unpack|protobuf_c_message_free_unpacked|grpc_call_start_batch|grpc_completion_queue_next|grpc_pollset_work|tcp_send|tcp_read|__libc_sendmsg|__libc_recvmsg|epoll_wait|malloc|free|cfree|syscall|main|run_query|qb_\w+|send_one|call_one)$" $OUT/$t-children-all.txt | head -40 > $OUT/$t-steps.txt
done
