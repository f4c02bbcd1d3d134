// CUDA kernels of the per-channel bias and its gradient (math: channel_bias.cuh).
#include "channel_bias.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::ChannelBiasAdd<float>);
VAE_INSTANTIATE_FOR_ROWS(vae::ops::ChannelBiasGrad<float>);
