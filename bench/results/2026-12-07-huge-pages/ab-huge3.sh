# (ran on the build of commit 666bd8b, which set the tunable at start-up)
# quiverd on 4 KiB pages (the operator's GLIBC_TUNABLES=glibc.malloc.hugetlb=0) vs the
# default (huge pages), alternated
. "$(dirname "$0")/ab.sh"
for r in 1 2 3; do for m in single batch; do
  export MODE=$m
  one small-$r GLIBC_TUNABLES=glibc.malloc.hugetlb=0 X=1 r95
  one huge-$r X=1 X=1 r95
done; done
