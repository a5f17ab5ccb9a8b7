/* Body of the MLP training loop, included by mlp.c once per element type.
 * Expects REAL, SUF, TABLE_TYPE, TABLE_CURRENT, GEMM_FN, GATHER_OTHER (the cross-type gather). */

#define FNN_CAT2_(a, b) a##_##b
#define FNN_CAT2(a, b) FNN_CAT2_(a, b)
#define NAME(base) FNN_CAT2(base, SUF)

/* C (m, n) = op(A) op(B) + beta C for row-major operands: BLAS sees the transposes. */
static void NAME(gemm)(int trans_a, int trans_b, int m, int n, int k, const REAL *a, int lda,
                       const REAL *b, int ldb, REAL beta, REAL *c, int ldc)
{
    char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
    REAL one = 1;
    if (m <= 0 || n <= 0) return;
    GEMM_FN(&ta, &tb, &n, &m, &k, &one, (REAL *)b, &ldb, (REAL *)a, &lda, &beta, c, &ldc);
}

/* C (m, n) = op(A) (m, k) B (k, n), row-major, beta 0: as tiles of whole-k BLAS calls where
   small_gemm.h finds that faster, else as one call (declared in mlp.h). */
void NAME(fnn_gemm_small)(int trans_a, int m, int n, int k, const REAL *a, int lda, const REAL *b, int ldb,
                          REAL *c, int ldc)
{
    int m_tile, n_tile;
    if (!fnn_small_gemm_tiles(trans_a, m, n, k, &m_tile, &n_tile)) {
        NAME(gemm)(trans_a, 0, m, n, k, a, lda, b, ldb, 0, c, ldc);
        return;
    }
    for (int r = 0; r < m; r += m_tile) {
        const int rows = m - r < m_tile ? m - r : m_tile;
        /* row r of op(A): row r of A, or column r of A when it is transposed */
        const REAL *a_rows = trans_a ? a + r : a + (ptrdiff_t)r * lda;
        for (int col = 0; col < n; col += n_tile) {
            const int cols = n - col < n_tile ? n - col : n_tile;
            NAME(gemm)(trans_a, 0, rows, cols, k, a_rows, lda, b + col, ldb, 0, c + (ptrdiff_t)r * ldc + col, ldc);
        }
    }
}

/* The optimizer's step on n parameters p with gradient g (state: first and second, see fnn_mlp);
   adam_step: the 1-based Adam step count of this training step. */
static void NAME(update)(const TABLE_TYPE *T, const fnn_sgd_config *opt, int64_t adam_step, REAL *p,
                         const REAL *g, REAL *first, REAL *second, ptrdiff_t n, double weight_decay)
{
    if (opt->adam) {
        const double step_size = opt->lr / (1.0 - pow(opt->beta1, (double)adam_step));
        const double inv_sqrt_bc2 = 1.0 / sqrt(1.0 - pow(opt->beta2, (double)adam_step));
        T->adam(p, g, first, second, n, (REAL)step_size, (REAL)inv_sqrt_bc2, (REAL)opt->beta1,
                (REAL)opt->beta2, (REAL)opt->eps, (REAL)weight_decay);
    } else {
        T->sgd(p, g, first, n, (REAL)opt->lr, (REAL)opt->momentum, (REAL)weight_decay, opt->nesterov);
    }
}

static ptrdiff_t NAME(count_correct)(const REAL *logits, const int64_t *labels, ptrdiff_t rows, int k)
{
    ptrdiff_t correct = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *row = logits + r * k;
        int best = 0;
        for (int c = 1; c < k; c++)
            if (row[c] > row[best]) best = c;
        correct += best == labels[r];
    }
    return correct;
}

/* gb[c] = sum over rows of dz[:, c] for c in [c0, c1), accumulated in double. */
static void NAME(column_sums)(const REAL *dz, REAL *gb, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t c0,
                             ptrdiff_t c1)
{
    double acc[512];
    for (ptrdiff_t start = c0; start < c1; start += 512) {
        ptrdiff_t width = c1 - start < 512 ? c1 - start : 512;
        for (ptrdiff_t c = 0; c < width; c++) acc[c] = 0.0;
        for (ptrdiff_t r = 0; r < rows; r++) {
            const REAL *row = dz + r * cols + start;
            for (ptrdiff_t c = 0; c < width; c++) acc[c] += (double)row[c];
        }
        for (ptrdiff_t c = 0; c < width; c++) gb[start + c] = (REAL)acc[c];
    }
}

/* Rows [r0, r1) of a[l+1] = act(sum of the threads' partial products + b). part[0] is a[l+1].
   keep_z (NULL unless the activation's derivative needs its input): receives those rows of z. */
static void NAME(finish_layer)(const TABLE_TYPE *T, REAL **part, int n_parts, const REAL *bias, int act,
                               double param, REAL *keep_z, ptrdiff_t r0, ptrdiff_t r1, int width)
{
    REAL *out = part[0] + r0 * width;
    const ptrdiff_t n = (r1 - r0) * width;
    for (int t = 1; t < n_parts; t++) {
        const REAL *src = part[t] + r0 * width;
        for (ptrdiff_t i = 0; i < n; i++) out[i] += src[i];
    }
    if (keep_z) {
        T->bias_act(0, 0.0, out, bias, r1 - r0, width);
        memcpy(keep_z + r0 * width, out, sizeof(REAL) * (size_t)n);
        T->act_forward(act, param, out, out, n);
    } else {
        T->bias_act(act, param, out, bias, r1 - r0, width);
    }
}

int NAME(fnn_mlp_sgd_steps)(const fnn_mlp *m, const fnn_batch_source *src, const fnn_sgd_config *opt,
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
    int widest = 0;
    for (int l = 1; l <= L; l++) widest = d[l] > widest ? d[l] : widest;
    /* Partial products of parts 1.. (part 0 writes straight into the layer's output). */
    REAL *scratch = NULL;
    if (parts > 1) {
        scratch = (REAL *)malloc(sizeof(REAL) * (size_t)(parts - 1) * (size_t)batch * (size_t)widest);
        if (!scratch) return -1;
    }
    out->loss_sum = 0.0;
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
        for (int p = 0; p < parts; p++)
            part[p] = p == 0 ? NULL : scratch + (size_t)(p - 1) * batch * widest;
        ptrdiff_t b0, b1;
        for (ptrdiff_t step = first_step; step < stop_step; step++) {
            const ptrdiff_t begin = step * (ptrdiff_t)batch;
            if (begin >= src->n_order) break;
            const int rows = (int)(src->n_order - begin < batch ? src->n_order - begin : batch);

            /* The batch, by columns: part p gathers the input columns its forward product and
               its weight gradient read (its rows of W0), so no thread waits for another here. */
            for (int p = tid; p < parts; p += nth) {
                split_range(d[0], parts, p, 1, &b0, &b1);
                const int width = (int)(b1 - b0);
                if (width <= 0) continue;
                for (int i = 0; i < rows; i++) {
                    const ptrdiff_t offset = src->order[begin + i] * (ptrdiff_t)d[0] + b0;
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
                    if (b1 > b0)
                        NAME(fnn_gemm_small)(0, rows, n_out, (int)(b1 - b0), (REAL *)m->a[l] + b0, n_in,
                                         (REAL *)m->w[l] + b0 * n_out, n_out, part[p], n_out);
                    else
                        memset(part[p], 0, sizeof(REAL) * (size_t)rows * n_out);
                }
                fnn_barrier_wait(&barrier);
                for (int p = tid; p < parts; p += nth) {
                    split_range(rows, parts, p, 1, &b0, &b1);
                    if (b1 > b0)
                        NAME(finish_layer)(T, part, parts, (REAL *)m->b[l], m->acts[l], m->act_params[l],
                                           fnn_act_needs_input(m->acts[l]) ? (REAL *)m->dz[l] : NULL, b0, b1,
                                           n_out);
                }
                /* The loss below reads only the logit rows its own part finished. */
                if (l < L - 1) fnn_barrier_wait(&barrier);
            }

            for (int p = tid; p < parts; p += nth) { /* loss and its gradient, per block of rows */
                split_range(rows, parts, p, 1, &b0, &b1);
                const int nr = (int)(b1 - b0);
                partial_loss[p] = 0.0;
                partial_correct[p] = 0;
                if (nr <= 0) continue;
                REAL *logits = (REAL *)m->a[L] + b0 * K;
                int64_t *labels = src->label_buf + b0;
                for (int i = 0; i < nr; i++) labels[i] = src->y[src->order[begin + b0 + i]];
                partial_loss[p] = T->softmax_xent(logits, labels, NULL, (REAL *)m->g[L] + b0 * K, NULL, nr,
                                                  K, 1.0 / rows);
                partial_correct[p] = NAME(count_correct)(logits, labels, nr, K);
                if (m->acts[L - 1]) /* an activation on the logits layer itself (z, if kept, is in dz) */
                    T->act_backward(m->acts[L - 1], m->act_params[L - 1], (REAL *)m->dz[L - 1] + b0 * K,
                                    (REAL *)m->a[L] + b0 * K, (REAL *)m->g[L] + b0 * K,
                                    (REAL *)m->dz[L - 1] + b0 * K, (ptrdiff_t)nr * K);
            }
            fnn_barrier_wait(&barrier);

            double total = 0.0;
            for (int p = 0; p < parts; p++) total += partial_loss[p];
            if (!isfinite(total)) { /* every thread sees the same total and stops here */
                if (tid == 0) out->failed_step = step;
                break;
            }

            const int64_t adam_step = opt->adam_steps_before + (step - first_step) + 1;
            /* Backward: dz of layer l is complete here. Each part computes, for its own weight
               rows, dx columns (from the weights before the update), dW, and the update. */
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
                            NAME(gemm)(0, 1, rows, (int)(b1 - b0), n_out, dz, n_out, w, n_out, 0, gx, n_in);
                            if (m->acts[l - 1]) { /* dz of the layer below, for the columns owned here */
                                for (int r = 0; r < rows; r++) {
                                    REAL *dz_row = (REAL *)m->dz[l - 1] + (ptrdiff_t)r * n_in + b0;
                                    T->act_backward(m->acts[l - 1], m->act_params[l - 1], dz_row,
                                                    (REAL *)m->a[l] + (ptrdiff_t)r * n_in + b0,
                                                    gx + (ptrdiff_t)r * n_in, dz_row, b1 - b0);
                                }
                            }
                        }
                        NAME(fnn_gemm_small)(1, (int)(b1 - b0), n_out, rows, (REAL *)m->a[l] + b0, n_in, dz, n_out,
                                         gw, n_out);
                        NAME(update)(T, opt, adam_step, w, gw, m->vw[l] ? (REAL *)m->vw[l] + b0 * n_out : NULL,
                                     m->sw[l] ? (REAL *)m->sw[l] + b0 * n_out : NULL, (b1 - b0) * n_out,
                                     opt->weight_decay);
                    }
                    split_range(n_out, parts, p, 1, &b0, &b1);
                    if (b1 > b0) {
                        NAME(column_sums)(dz, (REAL *)m->gb[l], rows, n_out, b0, b1);
                        NAME(update)(T, opt, adam_step, (REAL *)m->b[l] + b0, (REAL *)m->gb[l] + b0,
                                     m->vb[l] ? (REAL *)m->vb[l] + b0 : NULL, m->sb[l] ? (REAL *)m->sb[l] + b0 : NULL,
                                     b1 - b0, opt->bias_weight_decay);
                    }
                }
                fnn_barrier_wait(&barrier);
            }
            if (tid == 0) {
                out->loss_sum += total;
                for (int p = 0; p < parts; p++) out->correct += partial_correct[p];
                out->seen += rows;
            }
        }
    }
    free(scratch);
    return 0;
}

#undef NAME
#undef FNN_CAT2
#undef FNN_CAT2_
