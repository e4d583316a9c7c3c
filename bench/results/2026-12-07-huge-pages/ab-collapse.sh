# the refine copy collapsed onto huge pages once built or loaded (this commit) vs the
# source with the huge-page helper a no-op, alternated
. "$(dirname "$0")/ab.sh"
for r in 1 2 3 4; do for m in single batch; do
  export MODE=$m
  QD=/tmp/s26/quiverd-4k one small-$r X=1 X=1 r95
  QD=/tmp/s26/quiverd-collapse one huge-$r X=1 X=1 r95
done; done
