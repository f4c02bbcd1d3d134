// CUDA kernels of the mixture-of-Gaussians prior (math: mog_prior.cuh).
#include "for_each_cuda.cuh"
#include "mog_prior.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::MogDerive<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::MogLogProb<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::MogGradZ<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::MogGradParams<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::MogSample<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::MogGradParamsFrom<float>);
