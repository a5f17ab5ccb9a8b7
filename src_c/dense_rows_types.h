/* dense_rows_impl.h instantiated for float and double, for the SIMD path defined by the includer
 * (FNN_TARGET, PATH, DR_FMA); included once per path by dense_rows.h. */
#define REAL float
#define SUF f32
#include "dense_rows_impl.h"
#define REAL double
#define SUF f64
#include "dense_rows_impl.h"
