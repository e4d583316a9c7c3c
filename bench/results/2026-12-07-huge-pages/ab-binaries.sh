# ab-binaries.sh: two quiverd binaries, QD_A (labelled small: 4 KiB pages) and QD_B
# (labelled huge), alternated on the same data dir, 4 rounds of single and batch.
# ab-refine.txt: QD_A = 61c226a with qv_advise_huge a no-op, QD_B = 61c226a;
# ab-collapse.txt: QD_A the same, QD_B = 877c6e4.
. "$(dirname "$0")/ab.sh"
for r in 1 2 3 4; do for m in single batch; do
  export MODE=$m
  QD=${QD_A:?} one small-$r X=1 X=1 r95
  QD=${QD_B:?} one huge-$r X=1 X=1 r95
done; done
