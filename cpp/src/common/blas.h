// Row-major dense linear algebra for the factored layer, through the OpenBLAS of
// scipy-openblas32 (its symbols carry the scipy_ prefix; 32-bit integers).
#ifndef SOFTZO_COMMON_BLAS_H_
#define SOFTZO_COMMON_BLAS_H_

#include <cblas.h>
#include <lapacke.h>

#include <cstdint>

namespace softzo::blas {

inline CBLAS_TRANSPOSE trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

// C (m x n) = alpha op(A) op(B) + beta C.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_dgemm(CblasRowMajor, trans(ta), trans(tb), static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, trans(ta), trans(tb), static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
}

// LU of the n x n matrix a (in place); 0 on success, > 0 if exactly singular.
inline int getrf(int64_t n, double* a, int* pivots) {
  const blasint nn = static_cast<blasint>(n);
  return scipy_LAPACKE_dgetrf(LAPACK_ROW_MAJOR, nn, nn, a, nn, pivots);
}
// Solves A X = B for the n x nrhs B (in place), given getrf's factors.
inline void getrs(int64_t n, int64_t nrhs, const double* lu, const int* pivots, double* b) {
  const blasint nn = static_cast<blasint>(n), nr = static_cast<blasint>(nrhs);
  scipy_LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', nn, nr, lu, nn, pivots, b, nr);
}
// a (n x n, destroyed) = u diag(s) vt; 0 on success.
inline int gesdd(int64_t n, double* a, double* s, double* u, double* vt) {
  const blasint nn = static_cast<blasint>(n);
  return scipy_LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', nn, nn, a, nn, s, u, nn, vt, nn);
}

}  // namespace softzo::blas

#endif  // SOFTZO_COMMON_BLAS_H_
