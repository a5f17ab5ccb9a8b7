/* Serial kernel bodies, included by kernels.c once per (element type, SIMD path).
 *
 * Expects: REAL (float or double), SUF (f32/f64), FNN_IS_F32, PATH (generic/avx2), FNN_TARGET (a
 * function attribute or nothing), FNN_AVX2_INTRINSICS, EXP_NEG / EXPM1_NEG (from fastmath.h),
 * FABS, COPYSIGN, SQRT. The per-type ones (REAL ... SQRT, not PATH, FNN_TARGET and
 * FNN_AVX2_INTRINSICS) are undefined at the end, ready for the next type.
 * Each function works on a contiguous range; kernels.c splits ranges across threads.
 * "#pragma GCC ivdep": elementwise loops may run in place (out == in exactly); partial overlap is
 * refused in Python, so the assumed-dependence check GCC would add is not needed.
 */

#define FNN_CAT3_(a, b, c) a##_##b##_##c
#define FNN_CAT3(a, b, c) FNN_CAT3_(a, b, c)
#define NAME(base) FNN_CAT3(base, SUF, PATH)

#define SCALED_A ((REAL)FNN_SCALED_TANH_A)
#define SCALED_B ((REAL)FNN_SCALED_TANH_B)

FNN_INLINE REAL NAME(sigmoid1)(REAL v)
{
    REAL e = EXP_NEG(-FABS(v));
    return (v >= 0 ? (REAL)1 : e) / ((REAL)1 + e);
}

FNN_INLINE REAL NAME(tanh1)(REAL v)
{
    REAL m = EXPM1_NEG((REAL)-2 * FABS(v)); /* in (-1, 0] */
    return COPYSIGN(-m / ((REAL)2 + m), v);
}

/* Code 6 (exact GELU): x Phi(x) and its derivative Phi(x) + x phi(x), where
 * Phi(x) = erfc(-x / sqrt 2) / 2 (erfc, not 1 + erf: no cancellation for negative x), computed
 * in double with libm's erfc and exp and rounded once to REAL. Below x = -1 the rounding of the
 * argument t = -x / sqrt 2 is corrected to first order, erfc(t + e) = erfc(t) - e 2/sqrt(pi)
 * exp(-t^2), else its relative error, about 2 t^2 ulp, would dominate the far tail (above -1
 * it is below an ulp). Beyond +-40, Phi is 1 or 0 in double: GELU is then x or -0 (so -inf
 * gives -0, not -inf * 0 = NaN). NaN passes through. */
#ifndef FNN_GAUSS_HELPERS
#define FNN_GAUSS_HELPERS
#define FNN_INV_SQRT2_HI 0.70710678118654757274  /* 1/sqrt(2) rounded to double */
#define FNN_INV_SQRT2_LO -4.8336466567264567e-17 /* 1/sqrt(2) - FNN_INV_SQRT2_HI */
#define FNN_INV_SQRT_2PI 0.39894228040143267794
/* Phi(x) for |x| <= 40, given gauss = exp(-x^2 / 2) (read only below -1). */
static inline double fnn_gauss_cdf_d(double x, double gauss)
{
    const double u = -x, t = u * FNN_INV_SQRT2_HI;
    double p = erfc(t);
    if (x < -1.0) p -= (fma(u, FNN_INV_SQRT2_HI, -t) + u * FNN_INV_SQRT2_LO) * 1.12837916709551257390 * gauss;
    return 0.5 * p;
}
static inline double fnn_gauss_gate_d(double x)
{
    if (!(x >= -40.0 && x <= 40.0)) return x > 0 ? x : x < 0 ? -0.0 : x;
    return x * fnn_gauss_cdf_d(x, x < -1.0 ? exp(-0.5 * x * x) : 0.0);
}
static inline double fnn_gauss_gate_grad_d(double x)
{
    if (!(x >= -40.0 && x <= 40.0)) return x > 0 ? 1.0 : x < 0 ? 0.0 : x;
    const double gauss = exp(-0.5 * x * x);
    return fnn_gauss_cdf_d(x, gauss) + x * gauss * FNN_INV_SQRT_2PI;
}

/* The float32 path: Phi(x) in double without libm, so that the loops vectorise. With a = |x| /
 * sqrt 2, erfc(a) = exp(-a^2) erfcx(a), and erfcx(a) is a degree-14 polynomial in
 * u = (3 / (3 + a) - 11/18) * 18/7 (u in [-1, 1] for a in [0, 10.5]), fitted by weighted least
 * squares on Chebyshev nodes: relative error below 1.3e-12, so x Phi(x) and Phi(x) + x phi(x)
 * are within about half an ulp of float32 before their final rounding. Beyond |x| = 14.8 (a
 * clamped at 10.5) GELU is x or -0 and its derivative 1 or 0 once rounded to float32.
 * *gauss receives exp(-x^2 / 2) (for the clamped a beyond 14.8, where it is negligible). */
FNN_INLINE double fnn_gauss_cdf_poly(double x, double *gauss)
{
    const double z = x * FNN_INV_SQRT2_HI;
    double a = z < 0 ? -z : z;
    a = a < 10.5 ? a : 10.5; /* NaN too: the caller's x carries it */
    const double u = 3.0 / (3.0 + a) * (18.0 / 7.0) - 11.0 / 7.0;
    double p = 2.54570758768440849e-08;
    p = p * u + 4.73890655750547766e-08;
    p = p * u - 3.96879454142125216e-07;
    p = p * u - 6.71348270163351585e-07;
    p = p * u + 5.36656114273941431e-06;
    p = p * u + 1.14911170402405031e-05;
    p = p * u - 7.13274187831098102e-05;
    p = p * u - 3.02805973976596381e-04;
    p = p * u + 5.17134900290948602e-04;
    p = p * u + 8.24828500361539374e-03;
    p = p * u + 3.71643752307110609e-02;
    p = p * u + 1.06674786470590990e-01;
    p = p * u + 2.23668850025881105e-01;
    p = p * u + 3.58622917469286040e-01;
    p = p * u + 2.65461921997009576e-01;
    *gauss = fnn_exp_neg_d(-a * a);
    const double half_erfc = 0.5 * *gauss * p; /* erfc(a) / 2 */
    return z < 0 ? half_erfc : 1.0 - half_erfc;
}
#endif

static FNN_TARGET void NAME(act_forward)(int act, double param, const REAL *x, REAL *y, ptrdiff_t n)
{
    ptrdiff_t i;
    switch (act) {
    case FNN_ACT_SIGMOID:
#pragma GCC ivdep
        for (i = 0; i < n; i++) y[i] = NAME(sigmoid1)(x[i]);
        break;
    case FNN_ACT_RELU:
#pragma GCC ivdep
        for (i = 0; i < n; i++) y[i] = x[i] < 0 ? (REAL)0 : x[i]; /* NaN passes through */
        break;
    case FNN_ACT_TANH:
#pragma GCC ivdep
        for (i = 0; i < n; i++) y[i] = NAME(tanh1)(x[i]);
        break;
    case FNN_ACT_SCALED_TANH:
#pragma GCC ivdep
        for (i = 0; i < n; i++) y[i] = SCALED_A * NAME(tanh1)(SCALED_B * x[i]);
        break;
    case FNN_ACT_LEAKY_RELU: {
        const REAL slope = (REAL)param;
#pragma GCC ivdep
        for (i = 0; i < n; i++) y[i] = x[i] < 0 ? slope * x[i] : x[i]; /* NaN passes through */
        break;
    }
    case FNN_ACT_GELU:
#if FNN_IS_F32
#pragma GCC ivdep
        for (i = 0; i < n; i++) {
            const double v = (double)x[i];
            double gauss;
            const double cdf = fnn_gauss_cdf_poly(v, &gauss);
            y[i] = (REAL)(v < -20.0 ? -0.0 : v * cdf);
        }
#else
        for (i = 0; i < n; i++) y[i] = (REAL)fnn_gauss_gate_d((double)x[i]);
#endif
        break;
    default:
        if (x != y) memcpy(y, x, (size_t)n * sizeof(REAL));
    }
}

/* out = g * act'(z), from y = act(z) except where fnn_act_needs_input says z is needed. */
static FNN_TARGET void NAME(act_backward)(int act, double param, const REAL *z, const REAL *y, const REAL *g,
                                          REAL *out, ptrdiff_t n)
{
    ptrdiff_t i;
    switch (act) {
    case FNN_ACT_SIGMOID:
#pragma GCC ivdep
        for (i = 0; i < n; i++) out[i] = g[i] * y[i] * ((REAL)1 - y[i]);
        break;
    case FNN_ACT_RELU:
#pragma GCC ivdep
        for (i = 0; i < n; i++) out[i] = g[i] * (REAL)(y[i] > 0); /* NaN in grad stays NaN */
        break;
    case FNN_ACT_TANH:
#pragma GCC ivdep
        for (i = 0; i < n; i++) out[i] = g[i] * ((REAL)1 - y[i] * y[i]);
        break;
    case FNN_ACT_SCALED_TANH: {
        const REAL ab = (REAL)(FNN_SCALED_TANH_A * FNN_SCALED_TANH_B);
        const REAL b_over_a = (REAL)(FNN_SCALED_TANH_B / FNN_SCALED_TANH_A);
#pragma GCC ivdep
        for (i = 0; i < n; i++) out[i] = g[i] * (ab - b_over_a * y[i] * y[i]);
        break;
    }
    case FNN_ACT_LEAKY_RELU: { /* the slope is >= 0, so y > 0 exactly when z > 0 */
        const REAL slope = (REAL)param;
#pragma GCC ivdep
        for (i = 0; i < n; i++) out[i] = g[i] * (y[i] > 0 ? (REAL)1 : slope);
        break;
    }
    case FNN_ACT_GELU:
        (void)y;
#if FNN_IS_F32
#pragma GCC ivdep
        for (i = 0; i < n; i++) {
            const double v = (double)z[i];
            double gauss;
            const double cdf = fnn_gauss_cdf_poly(v, &gauss);
            const double d = v > 20.0 ? 1.0 : v < -20.0 ? 0.0 : cdf + v * gauss * FNN_INV_SQRT_2PI;
            out[i] = g[i] * (REAL)d;
        }
#else
        for (i = 0; i < n; i++) out[i] = g[i] * (REAL)fnn_gauss_gate_grad_d((double)z[i]);
#endif
        break;
    default:
        if (g != out) memcpy(out, g, (size_t)n * sizeof(REAL));
    }
}

static FNN_TARGET void NAME(bias_act)(int act, double param, REAL *z, const REAL *bias, ptrdiff_t rows,
                                      ptrdiff_t cols)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        REAL *row = z + r * cols;
        if (bias) {
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < cols; c++) row[c] += bias[c];
        }
        /* The row is in L1 after the bias pass, so a second pass costs little. */
        NAME(act_forward)(act, param, row, row, cols);
    }
}

/* acc[c] += x[r, c] in double for r < rows, c < cols; rows lie ld apart. The one column-sum
 * kernel: bias gradients of the linear ops (act_grad_colsum) and of the training engine. */
static FNN_TARGET void NAME(col_sums)(const REAL *x, ptrdiff_t ld, double *acc, ptrdiff_t rows, ptrdiff_t cols)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *row = x + r * ld;
        for (ptrdiff_t c = 0; c < cols; c++) acc[c] += (double)row[c];
    }
}

/* dz = grad * act'(z) row by row and acc[c] += dz[r, c] in double. dz == NULL: use grad. */
static FNN_TARGET void NAME(act_grad_colsum)(int act, double param, const REAL *z, const REAL *y, const REAL *g,
                                             REAL *dz, double *acc, ptrdiff_t rows, ptrdiff_t cols)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *src = g + r * cols;
        if (dz) {
            NAME(act_backward)(act, param, z ? z + r * cols : NULL, y ? y + r * cols : NULL, src, dz + r * cols,
                               cols);
            src = dz + r * cols;
        }
        NAME(col_sums)(src, cols, acc, 1, cols);
    }
}

/* Independent partial results keep the order fixed (deterministic) and let GCC vectorise
 * reductions it may not reorder by itself: 8 for short rows; long rows (k >= 64) use 32 for the
 * max and 16 for the sum, so that the loops do not wait on the latency of one vector's max or add. */
static FNN_TARGET REAL NAME(row_max)(const REAL *x, ptrdiff_t k)
{
    REAL m[8];
    ptrdiff_t c = 0;
    if (k < 8) {
        REAL best = x[0];
        for (c = 1; c < k; c++) best = x[c] > best ? x[c] : best;
        return best;
    }
    for (int j = 0; j < 8; j++) m[j] = x[j];
    for (c = 8; c + 8 <= k; c += 8)
        for (int j = 0; j < 8; j++) m[j] = x[c + j] > m[j] ? x[c + j] : m[j];
    REAL best = m[0];
    for (int j = 1; j < 8; j++) best = m[j] > best ? m[j] : best;
    for (; c < k; c++) best = x[c] > best ? x[c] : best;
    /* A NaN anywhere must reach the loss: comparisons above never select it. */
    return best;
}

static FNN_TARGET REAL NAME(row_max_long)(const REAL *x, ptrdiff_t k)
{
    REAL m[32];
    ptrdiff_t c;
    if (k < 64) return NAME(row_max)(x, k);
    for (int j = 0; j < 32; j++) m[j] = x[j];
    for (c = 32; c + 32 <= k; c += 32)
        for (int j = 0; j < 32; j++) m[j] = x[c + j] > m[j] ? x[c + j] : m[j];
    for (int j = 0; j < 8; j++) {
        m[j] = m[j + 8] > m[j] ? m[j + 8] : m[j];
        m[j] = m[j + 16] > m[j] ? m[j + 16] : m[j];
        m[j] = m[j + 24] > m[j] ? m[j + 24] : m[j];
    }
    REAL best = m[0];
    for (int j = 1; j < 8; j++) best = m[j] > best ? m[j] : best;
    for (; c < k; c++) best = x[c] > best ? x[c] : best;
    return best;
}

static FNN_TARGET double NAME(row_sum)(const REAL *x, ptrdiff_t k)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t c = 0;
    for (; c + 8 <= k; c += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[c + j];
    double total = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; c < k; c++) total += (double)x[c];
    return total;
}

static FNN_TARGET double NAME(row_sum_long)(const REAL *x, ptrdiff_t k)
{
    double s[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t c = 0;
    if (k < 64) return NAME(row_sum)(x, k);
    for (; c + 16 <= k; c += 16)
        for (int j = 0; j < 16; j++) s[j] += (double)x[c + j];
    for (int j = 0; j < 8; j++) s[j] += s[j + 8];
    double total = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; c < k; c++) total += (double)x[c];
    return total;
}

#define FNN_XENT_BLOCK 64
#define FNN_XENT_FLAT 2048 /* elements per block of short rows */

/* Loss of row i from its label term (x[label] - max) and sum of exponentials, then the row's
   gradient scale; shared by both row layouts below. */
static FNN_TARGET double NAME(xent_finish)(const double *sums, const double *label_terms, const REAL *weights,
                                           double scale, double *row_loss, REAL *factor, int n)
{
    double logs[FNN_XENT_BLOCK], total = 0.0;
    for (int i = 0; i < n; i++) logs[i] = fnn_log_d(sums[i]); /* vectorised, unlike a libm call */
    for (int i = 0; i < n; i++) {
        const double w = weights ? (double)weights[i] : 1.0;
        const double loss = w * (logs[i] - label_terms[i]);
        total += loss;
        if (row_loss) row_loss[i] = loss;
        factor[i] = (REAL)(w * scale / sums[i]);
    }
    return total;
}

static FNN_TARGET double NAME(softmax_xent)(const REAL *logits, const int64_t *labels, const REAL *weights,
                                            REAL *grad, double *row_loss, ptrdiff_t rows, ptrdiff_t k,
                                            double scale)
{
    double sums[FNN_XENT_BLOCK], label_terms[FNN_XENT_BLOCK];
    REAL factor[FNN_XENT_BLOCK];
    double total = 0.0;
    /* Short rows (K = 10 for digits) go a block at a time as one flat array, so the exponentials
       run in one long vector loop instead of many with scalar tails. Long rows are finished one
       at a time while they are in L1; only the logs of the loss wait for the block. */
    const int short_rows = k * 8 <= FNN_XENT_FLAT;
    const int block = short_rows ? (int)(FNN_XENT_FLAT / k < FNN_XENT_BLOCK ? FNN_XENT_FLAT / k : FNN_XENT_BLOCK)
                                 : FNN_XENT_BLOCK;
    REAL per_element[FNN_XENT_FLAT];
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += block) {
        const int n = (int)(rows - r0 < block ? rows - r0 : block);
        const REAL *x = logits + r0 * k;
        REAL *gr = grad + r0 * k;
        const ptrdiff_t flat = (ptrdiff_t)n * k;
        for (int i = 0; i < n; i++) {
            const REAL m = short_rows ? NAME(row_max)(x + i * k, k) : NAME(row_max_long)(x + i * k, k);
            /* In double, read before gr (maybe x itself) is written: for [3e38, 0, -3e38] the
               label term is -6e38, beyond float's range. */
            label_terms[i] = (double)x[i * k + labels[r0 + i]] - (double)m;
            if (short_rows) {
                for (ptrdiff_t c = 0; c < k; c++) per_element[i * k + c] = m;
            } else {
                const double w = weights ? (double)weights[r0 + i] : 1.0;
#pragma GCC ivdep
                for (ptrdiff_t c = 0; c < k; c++) gr[i * k + c] = EXP_NEG(x[i * k + c] - m);
                sums[i] = NAME(row_sum_long)(gr + i * k, k);
                const REAL f = (REAL)(w * scale / sums[i]);
#pragma GCC ivdep
                for (ptrdiff_t c = 0; c < k; c++) gr[i * k + c] *= f;
                gr[i * k + labels[r0 + i]] -= (REAL)(w * scale);
            }
        }
        if (short_rows) {
#pragma GCC ivdep
            for (ptrdiff_t j = 0; j < flat; j++) gr[j] = EXP_NEG(x[j] - per_element[j]);
            for (int i = 0; i < n; i++) sums[i] = NAME(row_sum)(gr + i * k, k);
        }
        total += NAME(xent_finish)(sums, label_terms, weights ? weights + r0 : NULL, scale,
                                   row_loss ? row_loss + r0 : NULL, factor, n);
        if (short_rows) {
            for (int i = 0; i < n; i++)
                for (ptrdiff_t c = 0; c < k; c++) per_element[i * k + c] = factor[i];
#pragma GCC ivdep
            for (ptrdiff_t j = 0; j < flat; j++) gr[j] *= per_element[j];
            for (int i = 0; i < n; i++) {
                const double w = weights ? (double)weights[r0 + i] : 1.0;
                gr[i * k + labels[r0 + i]] -= (REAL)(w * scale);
            }
        }
    }
    return total;
}

static FNN_TARGET void NAME(softmax_rows)(const REAL *logits, REAL *out, ptrdiff_t rows, ptrdiff_t k, int log_)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *x = logits + r * k;
        REAL *o = out + r * k;
        const REAL m = NAME(row_max_long)(x, k);
        if (log_) {
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < k; c++) o[c] = x[c] - m;
            /* sum of exp(o) without a second buffer: exp is recomputed in the sum pass */
            double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            ptrdiff_t c = 0;
            for (; c + 8 <= k; c += 8)
                for (int j = 0; j < 8; j++) s[j] += (double)EXP_NEG(o[c + j]);
            double total = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
            for (; c < k; c++) total += (double)EXP_NEG(o[c]);
            const REAL lse = (REAL)log(total);
#pragma GCC ivdep
            for (c = 0; c < k; c++) o[c] -= lse;
        } else {
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < k; c++) o[c] = EXP_NEG(x[c] - m);
            const REAL inv = (REAL)(1.0 / NAME(row_sum_long)(o, k));
#pragma GCC ivdep
            for (ptrdiff_t c = 0; c < k; c++) o[c] *= inv;
        }
    }
}

static FNN_TARGET void NAME(sgd)(REAL *p, const REAL *g, REAL *v, ptrdiff_t n, REAL lr, REAL mu, REAL wd,
                                 int nesterov)
{
    ptrdiff_t i;
    if (mu == 0) {
#pragma GCC ivdep
        for (i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
    } else if (!nesterov) {
#pragma GCC ivdep
        for (i = 0; i < n; i++) {
            REAL vi = mu * v[i] + (g[i] + wd * p[i]);
            v[i] = vi;
            p[i] -= lr * vi;
        }
    } else {
#pragma GCC ivdep
        for (i = 0; i < n; i++) {
            REAL gi = g[i] + wd * p[i];
            REAL vi = mu * v[i] + gi;
            v[i] = vi;
            p[i] -= lr * (gi + mu * vi);
        }
    }
}

/* One Adam step in place (fastnn.ops.adam_update's formulas): p = decay * p (AdamW's decoupled
 * weight decay; decay is 1 for Adam); g' = g + wd * p; m = b1 m + (1 - b1) g';
 * v = b2 v + (1 - b2) g'^2; p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), where
 * step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) (fnn_adam_factors). */
static FNN_TARGET void NAME(adam)(REAL *p, const REAL *g, REAL *m, REAL *v, ptrdiff_t n, REAL step_size,
                                  REAL inv_sqrt_bc2, double beta1, double beta2, REAL eps, REAL wd, REAL decay)
{
    /* 1 - b in double, then rounded: in float, 1 - 0.99999f loses most of its digits. */
    const REAL b1 = (REAL)beta1, b2 = (REAL)beta2, c1 = (REAL)(1.0 - beta1), c2 = (REAL)(1.0 - beta2);
    if (decay != (REAL)1) {
#pragma GCC ivdep
        for (ptrdiff_t i = 0; i < n; i++) p[i] *= decay;
    }
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL gi = wd != 0 ? p[i] * wd + g[i] : g[i];
        const REAL mi = m[i] * b1 + gi * c1;
        const REAL vi = v[i] * b2 + gi * gi * c2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= mi / (SQRT(vi) * inv_sqrt_bc2 + eps) * step_size;
    }
}

static FNN_TARGET void NAME(gather_u8)(const uint8_t *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,
                                       ptrdiff_t f, REAL scale, REAL shift)
{
    for (ptrdiff_t i = 0; i < n_rows; i++) {
        const uint8_t *src = x + rows[i] * f;
        REAL *dst = out + i * f;
        for (ptrdiff_t c = 0; c < f; c++) dst[c] = (REAL)src[c] * scale + shift;
    }
}

static FNN_TARGET void NAME(gather)(const REAL *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,
                                    ptrdiff_t f, REAL scale, REAL shift)
{
    for (ptrdiff_t i = 0; i < n_rows; i++) {
        const REAL *src = x + rows[i] * f;
        REAL *dst = out + i * f;
        for (ptrdiff_t c = 0; c < f; c++) dst[c] = src[c] * scale + shift;
    }
}

/* 1 when x holds a NaN or an infinity, else 0; *lo and *hi receive the least and greatest entries
 * (+inf and -inf when n is 0). One pass: v - v is 0 exactly when v is finite, so a non-finite
 * entry turns the sum into NaN. "omp simd" lets the reductions run in vector lanes (the order of
 * a min, a max and a sum of zeros or NaN does not change the results). */
static FNN_TARGET int NAME(finite_range)(const REAL *x, ptrdiff_t n, REAL *lo, REAL *hi)
{
    REAL least = (REAL)(1.0 / 0.0), greatest = -least, nonfinite = 0;
#pragma omp simd reduction(min : least) reduction(max : greatest) reduction(+ : nonfinite)
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL v = x[i];
        nonfinite += v - v;
        least = v < least ? v : least;
        greatest = v > greatest ? v : greatest;
    }
    *lo = least;
    *hi = greatest;
    return nonfinite != 0;
}

#if FNN_AVX2_INTRINSICS && FNN_IS_F32
/* dst (8 rows, stride ld_dst) = transpose of src (8 rows, stride ld_src), with AVX shuffles. */
static FNN_TARGET void NAME(transpose_8x8)(const float *src, ptrdiff_t ld_src, float *dst, ptrdiff_t ld_dst)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * ld_src);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}
#endif

/* dst (cols, rows) = transpose of src (rows, cols), in 8x8 blocks. */
static FNN_TARGET void NAME(transpose)(const REAL *src, REAL *dst, ptrdiff_t rows, ptrdiff_t cols)
{
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += 8) {
        const ptrdiff_t r1 = rows - r0 < 8 ? rows : r0 + 8;
        for (ptrdiff_t c0 = 0; c0 < cols; c0 += 8) {
            const ptrdiff_t c1 = cols - c0 < 8 ? cols : c0 + 8;
#if FNN_AVX2_INTRINSICS && FNN_IS_F32
            if (r1 - r0 == 8 && c1 - c0 == 8) {
                NAME(transpose_8x8)(src + r0 * cols + c0, cols, dst + c0 * rows + r0, rows);
                continue;
            }
#endif
            for (ptrdiff_t r = r0; r < r1; r++)
                for (ptrdiff_t c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/* ---- Losses besides softmax cross-entropy (above). Rows carry weights w (NULL: all 1); each
 * returns sum_i w_i * l_i in double, writes grad = scale * w_i * dl_i/dz (grad may alias z
 * exactly) and, when row_loss is not NULL, w_i * l_i to row_loss[i]. */

#define FNN_LOSS_CHUNK 256 /* elements of a row whose terms are summed at once */

/* log1p(e) for e in [0, 1] without libm (so the loop vectorises): log(u) * e / (u - 1) with
   u = 1 + e rounded, which cancels u's rounding error (exact to a few ulp of double). */
static FNN_TARGET inline double NAME(log1p_unit)(double e)
{
    const double u = 1.0 + e;
    return u == 1.0 ? e : fnn_log_d(u) * (e / (u - 1.0));
}

/* The losses on dense targets t (rows, k), selected by `loss` (enum fnn_loss):
 *   FNN_LOSS_BCE, binary cross-entropy on k independent logits z:
 *     l_i = sum_c max(z, 0) + log1p(exp(-|z|)) - t z,  dl/dz = sigmoid(z) - t;
 *   FNN_LOSS_MSE, squared error: l_i = mean_c (z - t)^2,  dl/dz = 2 (z - t) / k.
 * Each term is rounded to REAL (as the NumPy twins compute it) and a row's terms are summed in
 * double. The gradient is scaled in double with the weight last: w * dl/dz can fit where
 * w * 2 / k overflows, and a subnormal weight is rounded once. */
static FNN_TARGET double NAME(dense_loss)(int loss, const REAL *z, const REAL *t, const REAL *w, REAL *grad,
                                          double *row_loss, ptrdiff_t rows, ptrdiff_t k, double scale)
{
    const int bce = loss == FNN_LOSS_BCE;
    const double unit = bce ? scale : scale * 2.0 / (double)k;
    const double per_row = bce ? 1.0 : 1.0 / (double)k;
    REAL terms[FNN_LOSS_CHUNK];
    double total = 0.0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const double wi = w ? (double)w[r] : 1.0;
        double row = 0.0;
        for (ptrdiff_t c0 = 0; c0 < k; c0 += FNN_LOSS_CHUNK) {
            const ptrdiff_t n = k - c0 < FNN_LOSS_CHUNK ? k - c0 : FNN_LOSS_CHUNK;
            const REAL *zr = z + r * k + c0, *tr = t + r * k + c0;
            REAL *gr = grad + r * k + c0;
            if (bce) {
#pragma GCC ivdep
                for (ptrdiff_t c = 0; c < n; c++) {
                    const REAL v = zr[c], y = tr[c];
                    const REAL e = EXP_NEG(-FABS(v));
                    terms[c] = (v > 0 ? v : (REAL)0) + (REAL)NAME(log1p_unit)((double)e) - y * v;
                    gr[c] = (REAL)((double)((v >= 0 ? (REAL)1 : e) / ((REAL)1 + e) - y) * unit * wi);
                }
            } else {
#pragma GCC ivdep
                for (ptrdiff_t c = 0; c < n; c++) {
                    const REAL d = zr[c] - tr[c];
                    terms[c] = d * d;
                    gr[c] = (REAL)((double)d * unit * wi);
                }
            }
            row += NAME(row_sum_long)(terms, n);
        }
        row *= per_row;
        if (row_loss) row_loss[r] = wi * row;
        total += wi * row;
    }
    return total;
}

#undef NAME
#undef FNN_CAT3
#undef FNN_CAT3_
#undef SCALED_A
#undef SCALED_B
#undef REAL
#undef SUF
#undef FNN_IS_F32
#undef EXP_NEG
#undef EXPM1_NEG
#undef FABS
#undef COPYSIGN
#undef SQRT
