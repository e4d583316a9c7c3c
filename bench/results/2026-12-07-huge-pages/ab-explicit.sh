# (ran on a build with both: 666bd8b plus qv_advise_huge)
# explicit madvise of the refine copy and the attribute cache's table only
# (GLIBC_TUNABLES=glibc.malloc.hugetlb=0) vs the same plus malloc on huge pages
# (the default), alternated
. "$(dirname "$0")/ab.sh"
for r in 1 2 3 4; do for m in single batch; do
  export MODE=$m
  one explicit-$r GLIBC_TUNABLES=glibc.malloc.hugetlb=0 X=1 r95
  one all-$r X=1 X=1 r95
done; done
