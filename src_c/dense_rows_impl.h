/* The kernels of dense_rows.h for one (type, SIMD path); included by it with REAL, SUF, PATH and
 * FNN_TARGET defined. No include guard: meant to be included several times. */

#define DR_CAT2_(a, b, c) a##_##b##_##c
#define DR_CAT2(a, b, c) DR_CAT2_(a, b, c)
#define DR_NAME(base) DR_CAT2(base, SUF, PATH)
#define DR_LANES ((int)(32 / sizeof(REAL))) /* elements of one 32-byte vector */

/* For NR rows and CW_VECTORS 32-byte vectors of columns: out[r, j] += x[r, i] * w[i, j] for
   i = 0..k-1 in order, one multiply-add at a time, starting from 0 when `first` and else from
   out (the sum of the earlier blocks of i: storing it changes no bit). GCC's vector extension
   keeps the sums in registers on both paths. */
#define DR_BLOCK(ID, NR, CW_VECTORS)                                                               \
    static FNN_TARGET void DR_NAME(fnn_dr_block##ID)(const REAL *x, int ldx, const REAL *w, int n,  \
                                                     REAL *out, int ldo, int k, int first)         \
    {                                                                                              \
        typedef REAL vec __attribute__((vector_size(32), aligned(sizeof(REAL))));                  \
        vec acc[NR][CW_VECTORS];                                                                   \
        for (int r = 0; r < NR; r++)                                                               \
            for (int c = 0; c < CW_VECTORS; c++)                                                   \
                acc[r][c] = first ? (vec){0} : *(vec *)(out + (ptrdiff_t)r * ldo + c * DR_LANES);  \
        for (int i = 0; i < k; i++) {                                                              \
            const vec *wi = (const vec *)(w + (ptrdiff_t)i * n);                                   \
            vec wv[CW_VECTORS];                                                                    \
            for (int c = 0; c < CW_VECTORS; c++) wv[c] = wi[c];                                    \
            for (int r = 0; r < NR; r++) {                                                         \
                const REAL xv = x[(ptrdiff_t)r * ldx + i];                                         \
                for (int c = 0; c < CW_VECTORS; c++) acc[r][c] += xv * wv[c];                      \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < NR; r++)                                                               \
            for (int c = 0; c < CW_VECTORS; c++)                                                   \
                *(vec *)(out + (ptrdiff_t)r * ldo + c * DR_LANES) = acc[r][c];                    \
    }

DR_BLOCK(4, 4, 2)
DR_BLOCK(1, 1, 8)
DR_BLOCK(4_1, 4, 1) /* the whole vectors of columns left over */
DR_BLOCK(1_1, 1, 1)

/* Columns [j0, n) of `rows` rows, one output at a time (the same sums). The multiply-add is
   spelt out: GCC would otherwise vectorise the products of this loop and add them one by one,
   unfused, which rounds differently from the vector blocks' fused multiply-adds. */
#if DR_FMA
#define DR_MADD(a, b, c) (sizeof(REAL) == 4 ? __builtin_fmaf((a), (b), (c)) : __builtin_fma((a), (b), (c)))
#else
#define DR_MADD(a, b, c) ((c) + (a) * (b))
#endif
static FNN_TARGET void DR_NAME(fnn_dr_tail)(const REAL *x, int ldx, const REAL *w, int n, REAL *out,
                                            int ldo, int k, int first, int rows, int j0)
{
    for (int r = 0; r < rows; r++)
        for (int j = j0; j < n; j++) {
            REAL acc = first ? 0 : out[(ptrdiff_t)r * ldo + j];
            for (int i = 0; i < k; i++) acc = DR_MADD(x[(ptrdiff_t)r * ldx + i], w[(ptrdiff_t)i * n + j], acc);
            out[(ptrdiff_t)r * ldo + j] = acc;
        }
}

/* out (rows, n) = x (rows, k) @ w (k, n). The shared dimension goes by blocks of DR_K_BLOCK so
   that a block of w's columns stays in L1 while every group of 4 rows uses it; the rows left
   over go one at a time with wider column blocks (more sums in flight). */
#define DR_K_BLOCK 256
static FNN_TARGET void DR_NAME(fnn_dense_rows)(const REAL *x, const REAL *w, REAL *out, int rows,
                                               int k, int n)
{
    const int rows4 = rows / 4 * 4;
    for (int k0 = 0; k0 < k; k0 += DR_K_BLOCK) { /* k >= 1: a Linear has inputs */
        const int kb = k - k0 < DR_K_BLOCK ? k - k0 : DR_K_BLOCK, first = k0 == 0;
        const REAL *xk = x + k0, *wk = w + (ptrdiff_t)k0 * n;
        int j = 0;
        for (; j + 2 * DR_LANES <= n; j += 2 * DR_LANES)
            for (int r = 0; r < rows4; r += 4)
                DR_NAME(fnn_dr_block4)(xk + (ptrdiff_t)r * k, k, wk + j, n, out + (ptrdiff_t)r * n + j, n, kb,
                                       first);
        for (; j + DR_LANES <= n; j += DR_LANES)
            for (int r = 0; r < rows4; r += 4)
                DR_NAME(fnn_dr_block4_1)(xk + (ptrdiff_t)r * k, k, wk + j, n, out + (ptrdiff_t)r * n + j, n,
                                         kb, first);
        DR_NAME(fnn_dr_tail)(xk, k, wk, n, out, n, kb, first, rows4, j);
        for (int r = rows4; r < rows; r++) {
            const REAL *xr = xk + (ptrdiff_t)r * k;
            REAL *o = out + (ptrdiff_t)r * n;
            j = 0;
            for (; j + 8 * DR_LANES <= n; j += 8 * DR_LANES)
                DR_NAME(fnn_dr_block1)(xr, k, wk + j, n, o + j, n, kb, first);
            for (; j + DR_LANES <= n; j += DR_LANES)
                DR_NAME(fnn_dr_block1_1)(xr, k, wk + j, n, o + j, n, kb, first);
            DR_NAME(fnn_dr_tail)(xr, k, wk, n, o, n, kb, first, 1, j);
        }
    }
}
#undef DR_K_BLOCK

#undef DR_BLOCK
#undef DR_MADD
#undef DR_LANES
#undef DR_NAME
#undef DR_CAT2
#undef DR_CAT2_
#undef REAL
#undef SUF
