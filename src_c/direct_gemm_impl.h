/* fastnn's direct (unpacked) matrix products (direct_gemm.h says which shapes take them),
 * included by kernels_types.h once per (element type, SIMD path), before kernels_impl.h
 * (which undefines the per-type macros). Expects REAL, SUF, FNN_IS_F32, PATH and FNN_TARGET.
 *
 * Every output is one sum over the shared dimension in p order, started from the first
 * product (as a BLAS kernel does; the sum may differ from BLAS's in the last bits), whatever
 * block it falls in, except in the dot form, which keeps 2 DG_W partial sums (fixed, so the
 * same shape always gives the same bits on one SIMD path). All arithmetic is on whole vectors,
 * so that an output rounds alike in every block.
 */

/* The vector helpers below are static and never cross a translation unit, so the ABI note GCC
   gives for 32-byte vector returns on the generic path does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

#define FNN_DG_CAT_(a, b, c) a##_##b##_##c
#define FNN_DG_CAT(a, b, c) FNN_DG_CAT_(a, b, c)
#define DG_NAME(base) FNN_DG_CAT(base, SUF, PATH)

/* Eight floats or four doubles, loaded and stored unaligned: one AVX2 register on the avx2 path
 * (GCC's vector extensions; the generic path and other CPUs get two of their own). */
typedef REAL DG_NAME(vec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));
#define DG_VEC DG_NAME(vec)
#define DG_W ((int)(32 / sizeof(REAL)))
#define DG_IB 6 /* rows of C per block: 6 x 2 vectors of sums, two vectors of B and a multiplier
                     make 15 of an AVX2 core's 16 vector registers */

/* The n < DG_W elements at x in a vector, its other lanes zero. */
static FNN_TARGET inline DG_VEC DG_NAME(dg_last)(const REAL *x, int n)
{
    DG_VEC v = {0};
    for (int l = 0; l < n; l++) v[l] = x[l];
    return v;
}

/* The first `width` lanes of v to c, c_cs apart. */
static FNN_TARGET inline __attribute__((always_inline)) void DG_NAME(dg_put)(REAL *c, ptrdiff_t c_cs, DG_VEC v,
                                                                            int width)
{
    if (c_cs == 1 && width == DG_W)
        *(DG_VEC *)c = v;
    else
        for (int j = 0; j < width; j++) c[j * c_cs] = v[j];
}

/* One block of C: R <= DG_IB rows by V (1 or 2) vectors of columns, the last vector `last` <= DG_W
 * lanes wide; c[r*c_rs + j*c_cs] = sum_p a[r*a_rs + p*a_cs] * b[p*b_rs + j]. The sums are named
 * registers (s<row><vector>), not an array, so that GCC keeps all of them in registers; R, V and a
 * whole `last` are constants at the hot call sites, so the unused ones fold away.
 *
 * A partial last vector of B's rows 0..k-2 is loaded whole when the rows are at least DG_W apart
 * (b_rs >= DG_W): its extra lanes then lie inside the next row of B, so the load stays within B,
 * and those lanes' sums are never stored (lanes do not mix; what the extra lanes hold, even the
 * unused memory between the rows of a view, cannot reach a stored sum). The last row, or rows
 * closer than DG_W, are read lane by lane, the other lanes zero. */
static FNN_TARGET inline __attribute__((always_inline)) void DG_NAME(dg_block)(
    const int R, const int V, const int last, int k, const REAL *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const REAL *b,
    ptrdiff_t b_rs, REAL *c, ptrdiff_t c_rs, ptrdiff_t c_cs)
{
    DG_VEC s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0}, s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0}, s40 = {0},
           s41 = {0}, s50 = {0}, s51 = {0};
    const int whole_rows = last == DG_W ? k : b_rs >= DG_W ? k - 1 : 0; /* rows loaded as whole vectors */
#define DG_ADD(r)                                  \
        if (R > r) {                               \
            const REAL s = ap[r * a_rs];           \
            s##r##0 += s * b0;                     \
            if (V > 1) s##r##1 += s * b1;          \
        }
#define DG_STEP(LOAD_LAST)                                                                 \
    do {                                                                                   \
        const REAL *ap = a + (ptrdiff_t)p * a_cs, *bp = b + (ptrdiff_t)p * b_rs;           \
        const REAL *b_last = V == 1 ? bp : bp + DG_W; /* the vector that may be partial */ \
        const DG_VEC bl = LOAD_LAST;                                                       \
        const DG_VEC b0 = V == 1 ? bl : *(const DG_VEC *)bp, b1 = bl;                      \
        DG_ADD(0) DG_ADD(1) DG_ADD(2) DG_ADD(3) DG_ADD(4) DG_ADD(5)                        \
    } while (0)
    int p = 0;
    for (; p < whole_rows; p++) DG_STEP(*(const DG_VEC *)b_last);
    for (; p < k; p++) DG_STEP(DG_NAME(dg_last)(b_last, last));
#undef DG_STEP
#undef DG_ADD
#define DG_PUT(r)                                                                                 \
    if (R > r) {                                                                                  \
        DG_NAME(dg_put)(c + r * c_rs, c_cs, s##r##0, V > 1 ? DG_W : last);                        \
        if (V > 1) DG_NAME(dg_put)(c + r * c_rs + DG_W * c_cs, c_cs, s##r##1, last);              \
    }
    DG_PUT(0) DG_PUT(1) DG_PUT(2) DG_PUT(3) DG_PUT(4) DG_PUT(5)
#undef DG_PUT
}

/* One row: c[j*c_cs] = sum_p a[p*a_cs] * b[p*b_rs + j] for j < n, in blocks of 8 vectors (8
 * independent sums, so the additions do not wait on each other), then of one vector, then the
 * last columns in one vector. All arithmetic is on whole vectors, so every output is
 * rounded alike (GCC contracts a * b + c into one fused multiply-add on the avx2 path). */
static FNN_TARGET void DG_NAME(dg_row1)(int n, int k, const REAL *a, ptrdiff_t a_cs, const REAL *b, ptrdiff_t b_rs,
                                        REAL *c, ptrdiff_t c_cs)
{
    int j0 = 0;
    for (; j0 + 8 * DG_W <= n; j0 += 8 * DG_W) {
        DG_VEC acc[8];
        for (int v = 0; v < 8; v++) acc[v] = (DG_VEC){0};
        for (int p = 0; p < k; p++) {
            const REAL s = a[(ptrdiff_t)p * a_cs];
            const REAL *bp = b + (ptrdiff_t)p * b_rs + j0;
            for (int v = 0; v < 8; v++) acc[v] += s * *(const DG_VEC *)(bp + v * DG_W);
        }
        for (int v = 0; v < 8; v++)
            for (int j = 0; j < DG_W; j++) c[(ptrdiff_t)(j0 + v * DG_W + j) * c_cs] = acc[v][j];
    }
    for (; j0 + DG_W <= n; j0 += DG_W) {
        DG_VEC acc = {0};
        for (int p = 0; p < k; p++) acc += a[(ptrdiff_t)p * a_cs] * *(const DG_VEC *)(b + (ptrdiff_t)p * b_rs + j0);
        for (int j = 0; j < DG_W; j++) c[(ptrdiff_t)(j0 + j) * c_cs] = acc[j];
    }
    if (j0 < n) { /* the last columns in one vector, its other lanes zero */
        const int width = n - j0;
        DG_VEC acc = {0};
        for (int p = 0; p < k; p++) {
            const REAL *bp = b + (ptrdiff_t)p * b_rs + j0;
            DG_VEC bv = {0};
            for (int j = 0; j < width; j++) bv[j] = bp[j];
            acc += a[(ptrdiff_t)p * a_cs] * bv;
        }
        for (int j = 0; j < width; j++) c[(ptrdiff_t)(j0 + j) * c_cs] = acc[j];
    }
}

/* The height of the block of rows that starts at row i of m (i below dg_blocked_rows): DG_IB,
 * except that on the avx2 path the last 7 to 9 rows run as 4 and the rest, since a block of
 * fewer than 4 rows holds too few independent sums to keep both FMA units busy. */
static inline int DG_NAME(dg_block_rows)(int m, int i)
{
    const int left = m - i;
    return left >= DG_IB + 4 ? DG_IB : left > DG_IB ? 4 : left;
}

/* The rows that run in register blocks; the others run as single rows (dg_row1). On the generic
 * path a vector takes two SSE registers, so blocks of fewer than DG_IB rows gain nothing there
 * over single rows (measured: 2-2.5x slower), and only whole blocks of DG_IB run as blocks. */
static inline int DG_NAME(dg_blocked_rows)(int m)
{
#if FNN_AVX2_INTRINSICS
    return m;
#else
    return m - m % DG_IB;
#endif
}

/* The block of `rows` (<= DG_IB) rows from row i by the columns [j0, j0 + cols), cols <= 2 DG_W. */
#define DG_TILE(R)                                                                                   \
    do {                                                                                             \
        const REAL *ai = a + (ptrdiff_t)i * a_rs, *bj = b + j0;                                      \
        REAL *cij = c + (ptrdiff_t)i * c_rs + (ptrdiff_t)j0 * c_cs;                                  \
        if (cols == 2 * DG_W)                                                                        \
            DG_NAME(dg_block)(R, 2, DG_W, k, ai, a_rs, a_cs, bj, b_rs, cij, c_rs, c_cs);             \
        else if (cols > DG_W)                                                                        \
            DG_NAME(dg_block)(R, 2, cols - DG_W, k, ai, a_rs, a_cs, bj, b_rs, cij, c_rs, c_cs);      \
        else                                                                                         \
            DG_NAME(dg_block)(R, 1, cols, k, ai, a_rs, a_cs, bj, b_rs, cij, c_rs, c_cs);             \
    } while (0)
#define DG_ANY_TILE()                                                                                \
    do {                                                                                             \
        switch (rows) {                                                                              \
        case 6: DG_TILE(6); break;                                                                   \
        case 5: DG_TILE(5); break;                                                                   \
        case 4: DG_TILE(4); break;                                                                   \
        case 3: DG_TILE(3); break;                                                                   \
        case 2: DG_TILE(2); break;                                                                   \
        default: DG_TILE(1); break;                                                                  \
        }                                                                                            \
    } while (0)

/* B of at most this many bytes stays in the nearest cache whatever the order of the blocks. */
#define DG_SMALL_B_BYTES 32768

/* c[i*c_rs + j*c_cs] = sum_p a[i*a_rs + p*a_cs] * b[p*b_rs + j] for i < m, j < n, p < k, in
 * register blocks of DG_IB rows by 2 DG_W columns (dg_block). A small B is passed over block row
 * by block row, so that C is written row after row; a larger one column panel by column panel, so
 * that the panel (k x 2 DG_W) stays in the nearest cache while every block of rows passes over it.
 * One or two rows, fewer than DG_W columns, and on the generic path the rows after the last whole
 * block run as single rows (dg_row1), in blocks of 8 vectors. Every output is one sum
 * over p in order, each term added by one multiply-add on whole vectors, so it rounds alike in
 * any block and either order. */
static FNN_TARGET void DG_NAME(dg_rows)(int m, int n, int k, const REAL *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                                        const REAL *b, ptrdiff_t b_rs, REAL *c, ptrdiff_t c_rs, ptrdiff_t c_cs)
{
    const int blocked = m <= 2 || n < DG_W ? 0 : DG_NAME(dg_blocked_rows)(m);
    if ((double)k * n * sizeof(REAL) <= DG_SMALL_B_BYTES) {
        for (int i = 0, rows; i < blocked; i += rows) {
            rows = DG_NAME(dg_block_rows)(blocked, i);
            for (int j0 = 0; j0 < n; j0 += 2 * DG_W) {
                const int cols = n - j0 < 2 * DG_W ? n - j0 : 2 * DG_W;
                DG_ANY_TILE();
            }
        }
    } else {
        for (int j0 = 0; j0 < n; j0 += 2 * DG_W) {
            const int cols = n - j0 < 2 * DG_W ? n - j0 : 2 * DG_W;
            for (int i = 0, rows; i < blocked; i += rows) {
                rows = DG_NAME(dg_block_rows)(blocked, i);
                DG_ANY_TILE();
            }
        }
    }
    for (int i = blocked; i < m; i++)
        DG_NAME(dg_row1)(n, k, a + (ptrdiff_t)i * a_rs, a_cs, b, b_rs, c + (ptrdiff_t)i * c_rs, c_cs);
}
#undef DG_ANY_TILE
#undef DG_TILE
#undef DG_SMALL_B_BYTES

/* The lanes of a dot product's sums v added pairwise: lanes 2l and 2l+1, then those pairs two by
 * two, ... (for doubles (x0 + x1) + (x2 + x3)); dg_lanes_sum for one v, dg_lanes_sum4 for four
 * at once (the same additions, four results in one vector). */
#if FNN_IS_F32
typedef int32_t DG_NAME(lanes) __attribute__((vector_size(32)));
static FNN_TARGET inline REAL DG_NAME(dg_lanes_sum)(DG_VEC v)
{
    v = v + __builtin_shuffle(v, (DG_NAME(lanes)){1, 0, 3, 2, 5, 4, 7, 6});
    v = v + __builtin_shuffle(v, (DG_NAME(lanes)){2, 3, 0, 1, 6, 7, 4, 5});
    return v[0] + v[4];
}
static FNN_TARGET inline DG_VEC DG_NAME(dg_lanes_sum4)(DG_VEC v0, DG_VEC v1, DG_VEC v2, DG_VEC v3)
{
    const DG_NAME(lanes) even = {0, 8, 2, 10, 4, 12, 6, 14}, odd = {1, 9, 3, 11, 5, 13, 7, 15};
    const DG_VEC u01 = __builtin_shuffle(v0, v1, even) + __builtin_shuffle(v0, v1, odd);
    const DG_VEC u23 = __builtin_shuffle(v2, v3, even) + __builtin_shuffle(v2, v3, odd);
    /* lanes 0-3: rows 0-3 summed over x0..x3, lanes 4-7: over x4..x7 */
    const DG_VEC t = __builtin_shuffle(u01, u23, (DG_NAME(lanes)){0, 1, 8, 9, 4, 5, 12, 13})
                     + __builtin_shuffle(u01, u23, (DG_NAME(lanes)){2, 3, 10, 11, 6, 7, 14, 15});
    return t + __builtin_shuffle(t, (DG_NAME(lanes)){4, 5, 6, 7, 0, 1, 2, 3});
}
#else
typedef int64_t DG_NAME(lanes) __attribute__((vector_size(32)));
static FNN_TARGET inline REAL DG_NAME(dg_lanes_sum)(DG_VEC v)
{
    v = v + __builtin_shuffle(v, (DG_NAME(lanes)){1, 0, 3, 2});
    return v[0] + v[2];
}
static FNN_TARGET inline DG_VEC DG_NAME(dg_lanes_sum4)(DG_VEC v0, DG_VEC v1, DG_VEC v2, DG_VEC v3)
{
    const DG_NAME(lanes) even = {0, 4, 2, 6}, odd = {1, 5, 3, 7};
    const DG_VEC u01 = __builtin_shuffle(v0, v1, even) + __builtin_shuffle(v0, v1, odd);
    const DG_VEC u23 = __builtin_shuffle(v2, v3, even) + __builtin_shuffle(v2, v3, odd);
    return __builtin_shuffle(u01, u23, (DG_NAME(lanes)){0, 1, 4, 5})
           + __builtin_shuffle(u01, u23, (DG_NAME(lanes)){2, 3, 6, 7});
}
#endif

/* c[i*ldc + j] = sum_p a[i*lda + p] * b[j*b_cs + p]: dot products of contiguous rows, 4 rows of A
 * at a time against one column of op(B), in two vectors of partial sums (the first also takes a
 * last whole vector, the second the last elements, zero-padded) added together and then lane by
 * lane (dg_lanes_sum). */
static FNN_TARGET void DG_NAME(dg_dots)(int m, int n, int k, const REAL *a, ptrdiff_t lda, const REAL *b,
                                        ptrdiff_t b_cs, REAL *c, ptrdiff_t ldc)
{
    const int k_vec = k - k % (2 * DG_W), k_half = k_vec + DG_W <= k ? k_vec + DG_W : k_vec;
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const REAL *ai = a + (ptrdiff_t)i * lda;
        for (int j = 0; j < n; j++) {
            const REAL *bj = b + (ptrdiff_t)j * b_cs;
            DG_VEC s[4][2];
            for (int r = 0; r < 4; r++) s[r][0] = s[r][1] = (DG_VEC){0};
            for (int p = 0; p < k_vec; p += 2 * DG_W) {
                const DG_VEC b0 = *(const DG_VEC *)(bj + p), b1 = *(const DG_VEC *)(bj + p + DG_W);
                for (int r = 0; r < 4; r++) {
                    s[r][0] += *(const DG_VEC *)(ai + r * lda + p) * b0;
                    s[r][1] += *(const DG_VEC *)(ai + r * lda + p + DG_W) * b1;
                }
            }
            if (k_half > k_vec) {
                const DG_VEC b0 = *(const DG_VEC *)(bj + k_vec);
                for (int r = 0; r < 4; r++) s[r][0] += *(const DG_VEC *)(ai + r * lda + k_vec) * b0;
            }
            if (k_half < k) {
                const DG_VEC b_last = DG_NAME(dg_last)(bj + k_half, k - k_half);
                for (int r = 0; r < 4; r++) s[r][1] += DG_NAME(dg_last)(ai + r * lda + k_half, k - k_half) * b_last;
            }
            const DG_VEC sums = DG_NAME(dg_lanes_sum4)(s[0][0] + s[0][1], s[1][0] + s[1][1], s[2][0] + s[2][1],
                                                       s[3][0] + s[3][1]);
            for (int r = 0; r < 4; r++) c[(ptrdiff_t)(i + r) * ldc + j] = sums[r];
        }
    }
    for (; i < m; i++) {
        const REAL *ar = a + (ptrdiff_t)i * lda;
        for (int j = 0; j < n; j++) {
            const REAL *bj = b + (ptrdiff_t)j * b_cs;
            DG_VEC s0 = {0}, s1 = {0};
            for (int p = 0; p < k_vec; p += 2 * DG_W) {
                s0 += *(const DG_VEC *)(ar + p) * *(const DG_VEC *)(bj + p);
                s1 += *(const DG_VEC *)(ar + p + DG_W) * *(const DG_VEC *)(bj + p + DG_W);
            }
            if (k_half > k_vec) s0 += *(const DG_VEC *)(ar + k_vec) * *(const DG_VEC *)(bj + k_vec);
            if (k_half < k) s1 += DG_NAME(dg_last)(ar + k_half, k - k_half) * DG_NAME(dg_last)(bj + k_half, k - k_half);
            c[(ptrdiff_t)i * ldc + j] = DG_NAME(dg_lanes_sum)(s0 + s1);
        }
    }
}

/* The nonzero entries of x (rows x width, rows x_rs apart; NaN counts as nonzero) when there are
 * at most `most` of them, listed row by row (row_cols[row_start[i] .. row_start[i + 1]): the
 * columns of row i's, ascending) and column by column (col_rows[col_start[c] ..]: the rows of
 * column c's, ascending; col_start takes width + 1 entries, col_next width of scratch). Returns
 * their count, or -1 without listing them when there are more. They are counted first, a
 * vector at a time on the avx2 path, so that inputs without zeros cost little. */
#if FNN_AVX2_INTRINSICS && FNN_IS_F32
#define DG_NZ_LANES 8
#define DG_NZ_MASK(p) (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), _mm256_setzero_ps(), _CMP_NEQ_UQ))
#elif FNN_AVX2_INTRINSICS
#define DG_NZ_LANES 4
#define DG_NZ_MASK(p) (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(p), _mm256_setzero_pd(), _CMP_NEQ_UQ))
#else
#define DG_NZ_LANES 1
#define DG_NZ_MASK(p) (unsigned)(*(p) != 0)
#endif
static FNN_TARGET ptrdiff_t DG_NAME(dg_nonzeros)(const REAL *x, ptrdiff_t x_rs, int rows, int width, ptrdiff_t most,
                                                int *row_start, int *row_cols, int *col_start, int *col_next,
                                                int *col_rows)
{
    const int whole = width - width % DG_NZ_LANES;
    ptrdiff_t n = 0;
    for (int i = 0; i < rows; i++) {
        const REAL *xi = x + (ptrdiff_t)i * x_rs;
        for (int c = 0; c < whole; c += DG_NZ_LANES) n += __builtin_popcount(DG_NZ_MASK(xi + c));
        for (int c = whole; c < width; c++) n += xi[c] != 0;
    }
    if (n > most) return -1;
    int t = 0;
    for (int i = 0; i < rows; i++) {
        const REAL *xi = x + (ptrdiff_t)i * x_rs;
        row_start[i] = t;
        for (int c = 0; c < whole; c += DG_NZ_LANES)
            for (unsigned mask = DG_NZ_MASK(xi + c); mask; mask &= mask - 1) row_cols[t++] = c + __builtin_ctz(mask);
        for (int c = whole; c < width; c++)
            if (xi[c] != 0) row_cols[t++] = c;
    }
    row_start[rows] = t;
    memset(col_start, 0, sizeof(int) * (size_t)(width + 1));
    for (int k = 0; k < t; k++) col_start[row_cols[k] + 1]++;
    for (int c = 0; c < width; c++) col_start[c + 1] += col_start[c];
    memcpy(col_next, col_start, sizeof(int) * (size_t)width);
    for (int i = 0; i < rows; i++)
        for (int k = row_start[i]; k < row_start[i + 1]; k++) col_rows[col_next[row_cols[k]]++] = i;
    return t;
}
#undef DG_NZ_LANES
#undef DG_NZ_MASK

/* Columns [0, V DG_W + last) of one row of C from the terms t0..t1 of the lists (see
 * dg_sparse_rows): V <= 8 whole vectors of sums and, when last > 0 (then V < 8), one of `last`
 * lanes, all in one pass over the terms, so that up to 8 sums grow side by side. The partial
 * vector is loaded whole from rows of B that are not its last (b_rows of them) when the rows are
 * at least DG_W apart: its extra lanes then lie in the next row, and are never stored. */
static FNN_TARGET inline __attribute__((always_inline)) void DG_NAME(dg_sparse_block)(
    const int V, const int last, int t0, int t1, const int *list, const REAL *ar, ptrdiff_t a_ls, const REAL *b,
    ptrdiff_t b_rs, int b_rows, REAL *cr)
{
    DG_VEC acc[9];
    for (int v = 0; v < 9; v++) acc[v] = (DG_VEC){0};
    const int whole_loads = b_rs >= DG_W;
    for (int t = t0; t < t1; t++) {
        const int row = list[t];
        const REAL s = ar[(ptrdiff_t)row * a_ls];
        const REAL *bp = b + (ptrdiff_t)row * b_rs;
        for (int v = 0; v < V; v++) acc[v] += s * *(const DG_VEC *)(bp + v * DG_W);
        if (last)
            acc[V] += s * (whole_loads && row + 1 < b_rows ? *(const DG_VEC *)(bp + V * DG_W)
                                                           : DG_NAME(dg_last)(bp + V * DG_W, last));
    }
    for (int v = 0; v < V; v++) DG_NAME(dg_put)(cr + v * DG_W, 1, acc[v], DG_W);
    if (last) DG_NAME(dg_put)(cr + V * DG_W, 1, acc[V], last);
}

/* Rows of C from the nonzero terms alone: c[r*c_rs + j] = sum over t in [start[r], start[r+1]) of
 * a[r*a_rs + list[t]*a_ls] * b[list[t]*b_rs + j], j < n, list[t] < b_rows. With list[t]
 * ascending in each row this is, bit for bit, dg_rows's sum over every term: a zero term's
 * product is a zero, and adding a zero to a sum leaves it as it is (the sums start from +0 and an
 * exact cancellation gives +0, so no sum is ever -0). Columns in blocks of 8 vectors, then the
 * rest in one block (dg_sparse_block). */
static FNN_TARGET void DG_NAME(dg_sparse_rows)(int m, int n, const int *start, const int *list, const REAL *a,
                                               ptrdiff_t a_rs, ptrdiff_t a_ls, const REAL *b, ptrdiff_t b_rs,
                                               int b_rows, REAL *c, ptrdiff_t c_rs)
{
    const int blocks = n / (8 * DG_W), rest = n - blocks * 8 * DG_W, last = rest % DG_W;
    for (int r = 0; r < m; r++) {
        const int t0 = start[r], t1 = start[r + 1];
        const REAL *ar = a + (ptrdiff_t)r * a_rs;
        REAL *cr = c + (ptrdiff_t)r * c_rs;
        for (int i = 0; i < blocks; i++)
            DG_NAME(dg_sparse_block)(8, 0, t0, t1, list, ar, a_ls, b + i * 8 * DG_W, b_rs, b_rows, cr + i * 8 * DG_W);
        const REAL *bj = b + blocks * 8 * DG_W;
        REAL *cj = cr + blocks * 8 * DG_W;
#define DG_REST(V) DG_NAME(dg_sparse_block)(V, last, t0, t1, list, ar, a_ls, bj, b_rs, b_rows, cj)
        switch (rest / DG_W) {
        case 0: if (last) DG_REST(0); break;
        case 1: DG_REST(1); break;
        case 2: DG_REST(2); break;
        case 3: DG_REST(3); break;
        case 4: DG_REST(4); break;
        case 5: DG_REST(5); break;
        case 6: DG_REST(6); break;
        default: DG_REST(7); break;
        }
#undef DG_REST
    }
}

/* C (m, n) = op(A) op(B), row-major with leading dimensions lda, ldb, ldc, in the form
 * direct_gemm.h chose (FNN_DIRECT_ROWS / COLS / DOTS; its operands' contiguity is checked
 * there). */
static FNN_TARGET void DG_NAME(gemm_direct)(int form, int trans_a, int trans_b, int m, int n, int k, const REAL *a,
                                            int lda, const REAL *b, int ldb, REAL *c, int ldc)
{
    if (form == FNN_DIRECT_ROWS) /* rows of op(B) are contiguous: B not transposed, or one column */
        DG_NAME(dg_rows)(m, n, k, a, trans_a ? 1 : lda, trans_a ? lda : 1, b, trans_b ? 1 : ldb, c, ldc, 1);
    else if (form == FNN_DIRECT_COLS) /* C^T = op(B)^T op(A)^T: columns of op(A) are contiguous */
        DG_NAME(dg_rows)(n, m, k, b, trans_b ? ldb : 1, trans_b ? 1 : ldb, a, trans_a ? lda : 1, c, 1, ldc);
    else /* FNN_DIRECT_DOTS: rows of A and columns of op(B) are contiguous */
        DG_NAME(dg_dots)(m, n, k, a, lda, b, trans_b ? ldb : 1, c, ldc);
}

#undef DG_VEC
#undef DG_W
#undef DG_IB
#undef DG_NAME
#undef FNN_DG_CAT
#undef FNN_DG_CAT_
