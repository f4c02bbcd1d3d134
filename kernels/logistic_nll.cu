// CUDA kernel of the logistic likelihood (math: logistic_nll.cuh).
#include "for_each_cuda.cuh"
#include "logistic_nll.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::LogisticNll<float>);
