/* Includes direct_gemm_impl.h and kernels_impl.h once for float and once for double, with the
 * FNN_TARGET and PATH the includer defined (kernels.c does so once per SIMD path); kernels_impl.h
 * undefines the per-type macros below after each use. No include guard: meant to be included
 * several times. */

#define REAL float
#define SUF f32
#define FNN_IS_F32 1
#define EXP_NEG fnn_exp_neg_f
#define EXPM1_NEG fnn_expm1_neg_f
#define FABS __builtin_fabsf
#define COPYSIGN __builtin_copysignf
#define SQRT __builtin_sqrtf
#include "direct_gemm_impl.h"
#include "kernels_impl.h"

#define REAL double
#define SUF f64
#define FNN_IS_F32 0
#define EXP_NEG fnn_exp_neg_d
#define EXPM1_NEG fnn_expm1_neg_d
#define FABS __builtin_fabs
#define COPYSIGN __builtin_copysign
#define SQRT __builtin_sqrt
#include "direct_gemm_impl.h"
#include "kernels_impl.h"
