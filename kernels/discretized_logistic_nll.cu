// CUDA kernel of the discretized logistic likelihood (math: discretized_logistic_nll.cuh).
#include "discretized_logistic_nll.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::DiscretizedLogisticNll<float>);
