// CUDA kernels of the fused latent sample and KL (math: latent_sample_kl.cuh).
#include "for_each_cuda.cuh"
#include "latent_sample_kl.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::LatentSampleKlForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LatentSampleKlBackward<float>);
