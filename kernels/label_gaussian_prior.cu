// CUDA kernels of the label-conditioned Gaussian prior (math: label_gaussian_prior.cuh).
#include "for_each_cuda.cuh"
#include "label_gaussian_prior.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::LabelGaussianLogProb<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LabelGaussianGradZ<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LabelGaussianGradParams<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LabelGaussianSample<float>);
