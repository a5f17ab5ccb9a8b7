/* Body of the training engine (mlp.h), included by mlp.c once per element type.
 * Expects REAL, SUF, TABLE_TYPE, TABLE_CURRENT, GEMM_FN and GEMM64_FN (the BLAS routine with 32-
 * and 64-bit integers; the latter NULL unless chosen), GATHER_OTHER (the cross-type gather). */

#define FNN_CAT2_(a, b) a##_##b
#define FNN_CAT2(a, b) FNN_CAT2_(a, b)
#define NAME(base) FNN_CAT2(base, SUF)

void NAME(fnn_gemm)(int trans_a, int trans_b, int m, int n, int k, REAL alpha, const REAL *a, int lda,
                    const REAL *b, int ldb, REAL beta, REAL *c, int ldc)
{
    char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
    if (m <= 0 || n <= 0) return;
    if (alpha == 1 && beta == 0) { /* the only products fastnn makes; direct_gemm.h picks the shapes */
        const int form = fnn_direct_gemm_form(trans_a, trans_b, m, n, k, lda, ldb);
        if (form != FNN_DIRECT_NONE) {
            TABLE_CURRENT()->gemm_direct(form, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
            return;
        }
    }
    lda = lda > 1 ? lda : 1;
    ldb = ldb > 1 ? ldb : 1;
    ldc = ldc > 1 ? ldc : 1;
    if (GEMM64_FN != NULL) {
        int64_t m64 = m, n64 = n, k64 = k, lda64 = lda, ldb64 = ldb, ldc64 = ldc;
        GEMM64_FN(&ta, &tb, &n64, &m64, &k64, &alpha, (REAL *)b, &ldb64, (REAL *)a, &lda64, &beta, c, &ldc64);
        return;
    }
    GEMM_FN(&ta, &tb, &n, &m, &k, &alpha, (REAL *)b, &ldb, (REAL *)a, &lda, &beta, c, &ldc);
}

/* C (m, n) = op(A) (m, k) B (k, n), row-major, beta 0: computed directly where direct_gemm.h
   says so, else as tiles of whole-k BLAS calls where small_gemm.h finds that faster, else as one
   call (declared in mlp.h). */
void NAME(fnn_gemm_small)(int trans_a, int m, int n, int k, const REAL *a, int lda, const REAL *b, int ldb,
                          REAL *c, int ldc)
{
    int m_tile, n_tile;
    if (fnn_direct_gemm_form(trans_a, 0, m, n, k, lda, ldb) != FNN_DIRECT_NONE
        || !fnn_small_gemm_tiles(trans_a, m, n, k, &m_tile, &n_tile)) {
        NAME(fnn_gemm)(trans_a, 0, m, n, k, 1, a, lda, b, ldb, 0, c, ldc);
        return;
    }
    for (int r = 0; r < m; r += m_tile) {
        const int rows = m - r < m_tile ? m - r : m_tile;
        /* row r of op(A): row r of A, or column r of A when it is transposed */
        const REAL *a_rows = trans_a ? a + r : a + (ptrdiff_t)r * lda;
        for (int col = 0; col < n; col += n_tile) {
            const int cols = n - col < n_tile ? n - col : n_tile;
            NAME(fnn_gemm)(trans_a, 0, rows, cols, k, 1, a_rows, lda, b + col, ldb, 0, c + (ptrdiff_t)r * ldc + col,
                           ldc);
        }
    }
}

/* The optimizer's step on n parameters p with gradient g (state: first and second, see fnn_mlp);
   t: the 1-based update step count. */
static void NAME(update)(const TABLE_TYPE *T, const fnn_optimizer *opt, int64_t t, REAL *p, const REAL *g,
                         REAL *first, REAL *second, ptrdiff_t n)
{
    if (opt->kind == FNN_OPT_SGD) {
        T->sgd(p, g, first, n, (REAL)opt->lr, (REAL)opt->momentum, (REAL)opt->weight_decay, opt->nesterov);
        return;
    }
    double step_size, inv_sqrt_bc2;
    fnn_adam_factors(opt->lr, opt->beta1, opt->beta2, t, &step_size, &inv_sqrt_bc2);
    const int decoupled = opt->kind == FNN_OPT_ADAMW;
    T->adam(p, g, first, second, n, (REAL)step_size, (REAL)inv_sqrt_bc2, opt->beta1, opt->beta2,
            (REAL)opt->eps, decoupled ? (REAL)0 : (REAL)opt->weight_decay,
            decoupled ? (REAL)(1.0 - opt->lr * opt->weight_decay) : (REAL)1);
}

/* Rows predicted right among `rows` outputs (rows, k) (see fnn_mlp_steps). */
static ptrdiff_t NAME(count_correct)(int loss, const REAL *out, const int64_t *labels, const REAL *targets,
                                     ptrdiff_t rows, int k)
{
    ptrdiff_t correct = 0;
    if (loss == FNN_LOSS_MSE && k < 2) return 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *row = out + r * k;
        if (loss == FNN_LOSS_BCE) {
            int right = 1;
            for (int c = 0; c < k; c++) right &= (row[c] > 0) == (targets[r * k + c] > (REAL)0.5);
            correct += right;
            continue;
        }
        int best = 0;
        for (int c = 1; c < k; c++)
            if (row[c] > row[best]) best = c;
        if (loss == FNN_LOSS_SOFTMAX_XENT) {
            correct += best == labels[r];
        } else {
            const REAL *t = targets + r * k;
            int want = 0;
            for (int c = 1; c < k; c++)
                if (t[c] > t[want]) want = c;
            correct += best == want;
        }
    }
    return correct;
}

/* gb[c] = sum over rows of dz[:, c] for c in [c0, c1), accumulated in double. */
static void NAME(bias_gradient)(const TABLE_TYPE *T, const REAL *dz, REAL *gb, ptrdiff_t rows, ptrdiff_t cols,
                                ptrdiff_t c0, ptrdiff_t c1)
{
    double acc[512];
    for (ptrdiff_t start = c0; start < c1; start += 512) {
        const ptrdiff_t width = c1 - start < 512 ? c1 - start : 512;
        for (ptrdiff_t c = 0; c < width; c++) acc[c] = 0.0;
        T->col_sums(dz + start, cols, acc, rows, width);
        for (ptrdiff_t c = 0; c < width; c++) gb[start + c] = (REAL)acc[c];
    }
}

/* The Dropout on rows (rows, width) of a layer's output: mask = 1 / (1 - p) where u >= p, else 0,
   compared and scaled in the network type as the layer path does; out = in * mask. y_keep and
   mask_out are both NULL for the input's Dropout (it keeps neither), else both given. */
static void NAME(dropout)(const REAL *u, double p, REAL *x, REAL *y_keep, REAL *mask_out, ptrdiff_t n)
{
    const REAL threshold = (REAL)p, keep = (REAL)(1.0 / (1.0 - p));
    if (!y_keep || !mask_out) {
#pragma GCC ivdep
        for (ptrdiff_t i = 0; i < n; i++) x[i] = x[i] * (u[i] >= threshold ? keep : (REAL)0);
        return;
    }
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL m = u[i] >= threshold ? keep : (REAL)0;
        y_keep[i] = x[i];
        mask_out[i] = m;
        x[i] = x[i] * m;
    }
}

/* Rows [r0, r1) of block l's output: z = the threads' partial products summed + b, then the
   activation (z kept in dz[l] when its derivative needs it) and the Dropout on a[l+1]. part[0] is
   a[l+1]; u: this step's uniforms of that Dropout (rows of width n_out). */
static void NAME(finish_layer)(const TABLE_TYPE *T, const fnn_mlp *m, int l, REAL **part, int n_parts,
                               const REAL *u, ptrdiff_t r0, ptrdiff_t r1)
{
    const int width = m->dims[l + 1], act = m->acts[l];
    const double param = m->act_params[l];
    REAL *out = part[0] + r0 * width;
    const ptrdiff_t n = (r1 - r0) * width;
    for (int t = 1; t < n_parts; t++) {
        const REAL *src = part[t] + r0 * width;
        for (ptrdiff_t i = 0; i < n; i++) out[i] += src[i];
    }
    if (fnn_act_needs_input(act)) {
        REAL *z = (REAL *)m->dz[l] + r0 * width;
        T->bias_act(0, 0.0, out, (const REAL *)m->b[l], r1 - r0, width);
        memcpy(z, out, sizeof(REAL) * (size_t)n);
        T->act_forward(act, param, z, out, n);
    } else {
        T->bias_act(act, param, out, (const REAL *)m->b[l], r1 - r0, width);
    }
    if (l + 1 < m->n_layers && m->drop[l + 1] > 0)
        NAME(dropout)(u + r0 * width, m->drop[l + 1], out, (REAL *)m->y[l + 1] + r0 * width,
                      (REAL *)m->mask[l + 1] + r0 * width, n);
}

/* Whether the weight gradient gw = a[l][:, b0:b1]^T dz of part [b0, b1) (rows terms per entry)
   may hold a value that is not finite. Every |gw| <= rows * max|a| * max|dz|, so finite a and dz
   whose bound lies far below the type's largest value prove gw finite without reading it; that
   is taken where reading a and dz is cheaper than reading gw, and for the input (l = 0) when
   src->x_bound gives max|a[0]|. Otherwise, or when the bound fails, gw itself is scanned. */
static int NAME(weight_gradient_bad)(const TABLE_TYPE *T, const fnn_mlp *m, const fnn_batch_source *src, int l,
                                     int rows, ptrdiff_t b0, ptrdiff_t b1, const REAL *dz, const REAL *gw)
{
    const int n_in = m->dims[l], n_out = m->dims[l + 1];
    const ptrdiff_t width = b1 - b0, size = width * n_out;
    const int input_known = l == 0 && src->x_bound >= 0;
    const ptrdiff_t bound_reads = (ptrdiff_t)rows * n_out + (input_known ? 0 : (ptrdiff_t)rows * width);
    REAL lo, hi;
    if (bound_reads < size && rows <= FNN_BOUND_MAX_ROWS) {
        double a_max = 0.0;
        if (input_known) {
            a_max = src->x_bound * (m->drop[0] > 0 ? 1.0 / (1.0 - m->drop[0]) : 1.0);
        } else {
            const REAL *a = (const REAL *)m->a[l] + b0;
            for (int r = 0; r < rows; r++) {
                if (T->finite_range(a + (ptrdiff_t)r * n_in, width, &lo, &hi)) goto scan;
                a_max = fmax(a_max, fmax(fabs((double)lo), fabs((double)hi)));
            }
        }
        if (!T->finite_range(dz, (ptrdiff_t)rows * n_out, &lo, &hi)) {
            const double d_max = fmax(fabs((double)lo), fabs((double)hi));
            if ((double)rows * a_max * d_max <= REAL_MAX / 16) return 0;
        }
    }
scan:
    return T->finite_range(gw, size, &lo, &hi);
}

int NAME(fnn_mlp_steps)(const fnn_mlp *m, const fnn_batch_source *src, const fnn_optimizer *opt,
                        ptrdiff_t first_step, ptrdiff_t stop_step, int batch, int n_parts, int n_threads,
                        fnn_steps_result *out)
{
    const TABLE_TYPE *T = TABLE_CURRENT();
    const int L = m->n_layers, K = m->dims[m->n_layers];
    const int *d = m->dims;
    const int parts = n_parts < 1 ? 1 : (n_parts > FNN_MLP_MAX_THREADS ? FNN_MLP_MAX_THREADS : n_parts);
    const int nt = n_threads < 1 ? 1 : (n_threads > parts ? parts : n_threads);
    double partial_loss[FNN_MLP_MAX_THREADS];
    ptrdiff_t partial_correct[FNN_MLP_MAX_THREADS];
    int partial_bad[FNN_MLP_MAX_THREADS];
    int widest = 0;
    ptrdiff_t drop_width = 0; /* uniforms per batch row of a step */
    for (int l = 1; l <= L; l++) widest = d[l] > widest ? d[l] : widest;
    for (int j = 0; j < L; j++)
        if (m->drop[j] > 0) drop_width += d[j];
    /* Partial products of parts 1.. (part 0 writes straight into the layer's output). */
    REAL *scratch = NULL;
    if (parts > 1) {
        scratch = (REAL *)malloc(sizeof(REAL) * (size_t)(parts - 1) * (size_t)batch * (size_t)widest);
        if (!scratch) return -1;
    }
    /* Each part's nonzero inputs (the table's nonzeros), for the input layer's products where few
       of the part's inputs are nonzero (as in images on a blank background; mlp.c has the rule):
       computed from those alone they give the same bits as fastnn's dense kernels
       (dg_sparse_rows). */
    const ptrdiff_t part_width = (d[0] + parts - 1) / parts;
    int *sparse = NULL;
    if (fnn_sparse_input && d[1] >= FNN_SPARSE_MIN_OUTPUTS && (ptrdiff_t)batch * part_width <= FNN_SPARSE_MAX_ENTRIES) {
        sparse = (int *)malloc(sizeof(int) * (size_t)parts * (size_t)fnn_nonzero_lists_ints(batch, part_width));
        if (!sparse) {
            free(scratch);
            return -1;
        }
    }
    int sparse_part[FNN_MLP_MAX_THREADS] = {0};
    out->loss_sum = 0.0;
    out->weight_sum = 0.0;
    out->correct = 0;
    out->seen = 0;
    out->failed_step = -1;

    fnn_barrier barrier = {0, 0, 1};
    FNN_PARALLEL(nt)
    {
        const int tid = FNN_THREAD_ID(), nth = FNN_THREAD_COUNT();
#if FASTNN_OPENMP
#pragma omp single
        barrier.n = nth; /* the implied barrier publishes it to the team */
#endif
        REAL *part[FNN_MLP_MAX_THREADS];
        REAL lo, hi; /* finite_range's extremes, unused */
        for (int p = 0; p < parts; p++)
            part[p] = p == 0 ? NULL : scratch + (size_t)(p - 1) * batch * widest;
        ptrdiff_t b0, b1;
        for (ptrdiff_t step = first_step; step < stop_step; step++) {
            const ptrdiff_t begin = step * (ptrdiff_t)batch;
            if (begin >= src->n_order) break;
            const int rows = (int)(src->n_order - begin < batch ? src->n_order - begin : batch);
            /* This step's uniforms: per Dropout in layer order, (rows, width). Only the epoch's
               last step may be short, so the steps before it are whole batches. */
            const REAL *u_step = src->uniforms
                ? (const REAL *)src->uniforms + (step - first_step) * (ptrdiff_t)batch * drop_width : NULL;
            const REAL *u_layer[FNN_MLP_MAX_LAYERS];
            ptrdiff_t u_offset = 0;
            for (int j = 0; j < L; j++) {
                u_layer[j] = m->drop[j] > 0 ? u_step + u_offset : NULL;
                if (m->drop[j] > 0) u_offset += (ptrdiff_t)rows * d[j];
            }
            /* The batch's weight sum, the same in every thread (each sums it in row order). */
            double weight_sum = rows;
            if (src->weights) {
                weight_sum = 0.0;
                for (int i = 0; i < rows; i++) weight_sum += (double)((const REAL *)src->weights)[src->order[begin + i]];
            }
            const double loss_scale = weight_sum > 0 ? 1.0 / weight_sum : 0.0;

            /* The batch, by columns: part p gathers the input columns its forward product and
               its weight gradient read (its rows of W0), so no thread waits for another here. */
            for (int p = tid; p < parts; p += nth) {
                split_range(d[0], parts, p, 1, &b0, &b1);
                const int width = (int)(b1 - b0);
                if (width <= 0) continue;
                for (int i = 0; i < rows; i++) {
                    const ptrdiff_t offset = src->order[begin + i] * (ptrdiff_t)d[0] + b0;
                    if (i + FNN_GATHER_AHEAD < rows)
                        fnn_prefetch_x(src, src->order[begin + i + FNN_GATHER_AHEAD] * (ptrdiff_t)d[0] + b0, width);
                    REAL *x0 = (REAL *)m->a[0] + (ptrdiff_t)i * d[0] + b0;
                    /* One row at a time: the source row pointer itself, row index 0. */
                    if (src->x_kind == 0)
                        T->gather_u8((const uint8_t *)src->x + offset, &fnn_row_zero, x0, 1, width,
                                     (REAL)src->scale, (REAL)src->shift);
                    else if (src->x_kind == SAME_KIND)
                        T->gather((const REAL *)src->x + offset, &fnn_row_zero, x0, 1, width, (REAL)src->scale,
                                  (REAL)src->shift);
                    else
                        GATHER_OTHER(src->x, offset, x0, width, src->scale, src->shift);
                    if (u_layer[0])
                        NAME(dropout)(u_layer[0] + (ptrdiff_t)i * d[0] + b0, m->drop[0], x0, NULL, NULL, width);
                }
                if (sparse) { /* few enough of the part's inputs nonzero: their lists */
                    const fnn_nonzero_lists z = fnn_part_lists(sparse, p, batch, part_width);
                    const double share = fmin(0.5, 5.0 * d[1] / (8.0 * (FNN_SPARSE_COST_OUTPUTS + d[1])));
                    const ptrdiff_t most = (ptrdiff_t)(share * rows * width);
                    sparse_part[p] = T->nonzeros((REAL *)m->a[0] + b0, d[0], rows, width, most, z.row_start, z.row_cols,
                                                 z.col_start, z.col_next, z.col_rows) >= 0;
                }
            }

            /* Forward. Part p owns rows [i0, i1) of every weight matrix and only its thread reads
               or writes them: a[l] @ W splits along the shared dimension into per-part products
               summed row by row, so W's cache lines stay with the core that updates them. The
               parts are fixed by n_parts, not by the threads running them: 1 or n threads make
               the same BLAS calls and give the same bits. */
            for (int l = 0; l < L; l++) {
                const int n_in = d[l], n_out = d[l + 1];
                part[0] = (REAL *)m->a[l + 1];
                for (int p = tid; p < parts; p += nth) {
                    split_range(n_in, parts, p, 1, &b0, &b1);
                    if (b1 > b0 && l == 0 && sparse_part[p]) {
                        const fnn_nonzero_lists z = fnn_part_lists(sparse, p, batch, part_width);
                        T->sparse_rows(rows, n_out, z.row_start, z.row_cols, (REAL *)m->a[0] + b0, n_in, 1,
                                       (REAL *)m->w[0] + b0 * n_out, n_out, (int)(b1 - b0), part[p], n_out);
                    } else if (b1 > b0)
                        NAME(fnn_gemm_small)(0, rows, n_out, (int)(b1 - b0), (REAL *)m->a[l] + b0, n_in,
                                             (REAL *)m->w[l] + b0 * n_out, n_out, part[p], n_out);
                    else
                        memset(part[p], 0, sizeof(REAL) * (size_t)rows * n_out);
                }
                fnn_barrier_wait(&barrier);
                for (int p = tid; p < parts; p += nth) {
                    split_range(rows, parts, p, 1, &b0, &b1);
                    if (b1 > b0)
                        NAME(finish_layer)(T, m, l, part, parts, l + 1 < L ? u_layer[l + 1] : NULL, b0, b1);
                }
                /* The loss below reads only the output rows its own part finished. */
                if (l < L - 1) fnn_barrier_wait(&barrier);
            }

            for (int p = tid; p < parts; p += nth) { /* loss and its gradient, per block of rows */
                split_range(rows, parts, p, 1, &b0, &b1);
                const int nr = (int)(b1 - b0);
                partial_loss[p] = 0.0;
                partial_correct[p] = 0;
                if (nr <= 0) continue;
                REAL *outputs = (REAL *)m->a[L] + b0 * K;
                REAL *grad = (REAL *)m->g[L] + b0 * K;
                const int64_t *rows_of = src->order + begin + b0;
                REAL *w = NULL;
                if (src->weights) {
                    w = (REAL *)src->weight_buf + b0;
                    for (int i = 0; i < nr; i++) w[i] = ((const REAL *)src->weights)[rows_of[i]];
                }
                int64_t *labels = NULL;
                REAL *targets = NULL;
                if (src->loss == FNN_LOSS_SOFTMAX_XENT) {
                    labels = src->label_buf + b0;
                    for (int i = 0; i < nr; i++) labels[i] = src->labels[rows_of[i]];
                } else {
                    targets = (REAL *)src->target_buf + b0 * K;
                    for (int i = 0; i < nr; i++)
                        memcpy(targets + (ptrdiff_t)i * K, (const REAL *)src->targets + rows_of[i] * K,
                               sizeof(REAL) * (size_t)K);
                }
                partial_loss[p] = NAME(fnn_loss_rows)(T, src->loss, outputs, labels, targets, w, grad, NULL, nr, K,
                                                      loss_scale);
                partial_correct[p] = NAME(count_correct)(src->loss, outputs, labels, targets, nr, K);
                if (m->acts[L - 1]) { /* an activation on the output layer itself */
                    REAL *dz = (REAL *)m->dz[L - 1] + b0 * K;
                    T->act_backward(m->acts[L - 1], m->act_params[L - 1], dz, outputs, grad, dz, (ptrdiff_t)nr * K);
                }
            }
            fnn_barrier_wait(&barrier);

            double total = 0.0;
            for (int p = 0; p < parts; p++) total += partial_loss[p];
            if (!isfinite(total)) { /* every thread sees the same total and stops here */
                if (tid == 0) out->failed_step = step;
                break;
            }

            /* Backward: dz of layer l is complete here. Each part computes, for its own weight
               rows, dx columns, dW and db, and notes whether they are all finite. */
            for (int p = tid; p < parts; p += nth) partial_bad[p] = 0;
            for (int l = L - 1; l >= 0; l--) {
                const int n_in = d[l], n_out = d[l + 1];
                const REAL *dz = m->acts[l] ? (REAL *)m->dz[l] : (REAL *)m->g[l + 1];
                for (int p = tid; p < parts; p += nth) {
                    split_range(n_in, parts, p, 1, &b0, &b1);
                    if (b1 > b0) {
                        REAL *w = (REAL *)m->w[l] + b0 * n_out;
                        REAL *gw = (REAL *)m->gw[l] + b0 * n_out;
                        if (l > 0) {
                            REAL *gx = (REAL *)m->g[l] + b0;
                            const int below = m->acts[l - 1];
                            const int dropped = m->drop[l] > 0;
                            NAME(fnn_gemm)(0, 1, rows, (int)(b1 - b0), n_out, 1, dz, n_out, w, n_out, 0, gx, n_in);
                            for (int r = 0; r < rows && (below || dropped); r++) {
                                const ptrdiff_t at = (ptrdiff_t)r * n_in + b0;
                                REAL *gr = gx + (ptrdiff_t)r * n_in;
                                if (dropped) {
                                    const REAL *mask = (const REAL *)m->mask[l] + at;
                                    for (ptrdiff_t c = 0; c < b1 - b0; c++) gr[c] *= mask[c];
                                }
                                if (below) { /* dz of the layer below, for the columns owned here */
                                    REAL *dz_below = (REAL *)m->dz[l - 1] + at;
                                    const REAL *y = (const REAL *)(dropped ? m->y[l] : m->a[l]) + at;
                                    T->act_backward(below, m->act_params[l - 1], dz_below, y, gr, dz_below, b1 - b0);
                                }
                            }
                        }
                        if (l == 0 && sparse_part[p]) {
                            const fnn_nonzero_lists z = fnn_part_lists(sparse, p, batch, part_width);
                            T->sparse_rows((int)(b1 - b0), n_out, z.col_start, z.col_rows, (REAL *)m->a[0] + b0, 1,
                                           n_in, dz, n_out, rows, gw, n_out);
                        } else
                            NAME(fnn_gemm_small)(1, (int)(b1 - b0), n_out, rows, (REAL *)m->a[l] + b0, n_in, dz,
                                                 n_out, gw, n_out);
                        partial_bad[p] |= NAME(weight_gradient_bad)(T, m, src, l, rows, b0, b1, dz, gw);
                    }
                    split_range(n_out, parts, p, 1, &b0, &b1);
                    if (b1 > b0) {
                        NAME(bias_gradient)(T, dz, (REAL *)m->gb[l], rows, n_out, b0, b1);
                        partial_bad[p] |= T->finite_range((REAL *)m->gb[l] + b0, b1 - b0, &lo, &hi);
                    }
                }
                fnn_barrier_wait(&barrier);
            }
            int bad = 0;
            for (int p = 0; p < parts; p++) bad |= partial_bad[p];
            if (bad) { /* a gradient is not finite: every thread stops here, nothing applied */
                if (tid == 0) out->failed_step = step;
                break;
            }

            /* The update: each part its own rows of every W and entries of every b (no other part
               reads them before the next step's barriers). */
            const int64_t t = opt->steps_before + (step - first_step) + 1;
            for (int l = 0; l < L; l++) {
                const int n_in = d[l], n_out = d[l + 1];
                for (int p = tid; p < parts; p += nth) {
                    split_range(n_in, parts, p, 1, &b0, &b1);
                    if (b1 > b0)
                        NAME(update)(T, opt, t, (REAL *)m->w[l] + b0 * n_out, (REAL *)m->gw[l] + b0 * n_out,
                                     m->vw[l] ? (REAL *)m->vw[l] + b0 * n_out : NULL,
                                     m->sw[l] ? (REAL *)m->sw[l] + b0 * n_out : NULL, (b1 - b0) * n_out);
                    split_range(n_out, parts, p, 1, &b0, &b1);
                    if (b1 > b0)
                        NAME(update)(T, opt, t, (REAL *)m->b[l] + b0, (REAL *)m->gb[l] + b0,
                                     m->vb[l] ? (REAL *)m->vb[l] + b0 : NULL, m->sb[l] ? (REAL *)m->sb[l] + b0 : NULL,
                                     b1 - b0);
                }
            }
            if (tid == 0) {
                out->loss_sum += total;
                out->weight_sum += weight_sum;
                for (int p = 0; p < parts; p++) out->correct += partial_correct[p];
                out->seen += rows;
            }
        }
    }
    free(scratch);
    free(sparse);
    return 0;
}

#undef NAME
#undef FNN_CAT2
#undef FNN_CAT2_
