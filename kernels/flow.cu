// CUDA kernels of the flow layers (math: flow.cuh).
#include "flow.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::ActNormForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::ActNormInverse<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::ActNormInputGrad<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::ActNormParamGrad<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LuForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LuInverse<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LuInputGrad<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LuParamGrad<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::CouplingForward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::CouplingInverse<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::CouplingInputGrad<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::CouplingParamGrad<float>);
