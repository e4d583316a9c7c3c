# the refine copy and the attribute cache's table on huge pages (this commit's quiverd)
# vs the same source with qv_advise_huge a no-op, alternated
. "$(dirname "$0")/ab.sh"
for r in 1 2 3 4; do for m in single batch; do
  export MODE=$m
  QD=/tmp/s26/quiverd-4k one small-$r X=1 X=1 r95
  QD=/tmp/s26/quiverd-huge one huge-$r X=1 X=1 r95
done; done
