#include "model/networks.hpp"

#include <memory>
#include <string>

#include "vae/error.hpp"

namespace vae {

void build_networks(const ModelConfig& config, Sequential& encoder, Sequential& decoder) {
  const EncoderConfig& e = config.encoder;
  const Shape image{config.image_channels, config.image_height, config.image_width};
  // Each hidden layer is followed by the activation; a gated network (activation "gated") doubles
  // the layer's outputs instead and follows it with a Gate, which halves them again.
  const bool gated = e.activation == Activation::Gated;
  const int widen = gated ? 2 : 1;
  auto activate = [&](Sequential& net) {
    if (gated) net.add(std::make_unique<Gate>(net.out_shape()));
    else net.add(std::make_unique<ActivationLayer>(e.activation, e.leaky_slope, net.out_shape()));
  };

  // Encoder: convs (keeping each one's input shape for the mirror), Flatten, linear layers.
  // A conditional encoder sees the condition after the image: one plane per class (conv) or the
  // one-hot vector (mlp); see ModelConfig::conditional.
  const int64_t classes = config.conditional ? config.classes : 0;
  std::vector<Shape> conv_inputs;
  Shape shape = config.encoder.type == NetworkType::Conv ? Shape{image[0] + classes, image[1], image[2]}
                                                         : Shape{shape_numel(image) + classes};
  if (e.type == NetworkType::Conv) {
    for (size_t i = 0; i < e.channels.size(); ++i) {
      conv_inputs.push_back(shape);
      try {
        encoder.add(std::make_unique<Conv2d>(shape, e.channels[i] * widen, e.kernel, e.stride, e.padding));
      } catch (const Error& err) {
        throw Error("encoder.channels[" + std::to_string(i) + "]: " + err.what() +
                    "; use fewer conv layers, a smaller kernel or more padding for " + to_string(image) + " images");
      }
      activate(encoder);
      shape = encoder.out_shape();
    }
    encoder.add(std::make_unique<Flatten>(shape));
  }
  const Shape conv_out = e.type == NetworkType::Conv ? shape : Shape{};
  int64_t width = shape_numel(shape);
  for (int h : e.hidden) {
    encoder.add(std::make_unique<Linear>(static_cast<int>(width), h * widen));
    activate(encoder);
    width = h;
  }
  encoder.add(std::make_unique<Linear>(static_cast<int>(width), 2 * config.latent));
  // A hierarchy's encoder clamps the top's head here; the lower levels' heads are clamped in the
  // top-down path, after it adds to them (latent/top_down.hpp).
  if (config.logvar_clamp != LogvarClampKind::None)
    encoder.add(std::make_unique<LogvarClamp>(config.top_latent(), config.logvar_min, config.logvar_max,
                                              config.logvar_clamp == LogvarClampKind::Soft, 2 * int64_t(config.latent)));

  // Decoder: the mirror image. Its linear part ends at the image (mlp) or at the last conv's output.
  width = config.decoder_input_dim();
  for (auto it = e.hidden.rbegin(); it != e.hidden.rend(); ++it) {
    decoder.add(std::make_unique<Linear>(static_cast<int>(width), *it * widen));
    activate(decoder);
    width = *it;
  }
  if (e.type == NetworkType::MLP) {
    decoder.add(std::make_unique<Linear>(static_cast<int>(width), static_cast<int>(config.decoder_output_dim())));
    return;
  }
  decoder.add(std::make_unique<Linear>(static_cast<int>(width), static_cast<int>(shape_numel(conv_out) * widen)));
  activate(decoder);
  decoder.add(std::make_unique<Reshape>(Shape{shape_numel(conv_out)}, conv_out));
  for (size_t i = conv_inputs.size(); i-- > 0;) {
    // The first conv's input had the condition's planes; the decoder gives back the image alone.
    // The last layer gives the likelihood's parameters (decoder_output_channels per position).
    const Shape target = i == 0 ? Shape{config.decoder_output_channels(), image[1], image[2]} : conv_inputs[i];
    const Shape& from = decoder.out_shape();
    // The output padding that brings each axis back to the encoder's size exactly.
    const int pad_h = static_cast<int>(target[1]) -
                      conv_transpose_output_size(static_cast<int>(from[1]), e.kernel, e.stride, e.padding, 0);
    const int pad_w = static_cast<int>(target[2]) -
                      conv_transpose_output_size(static_cast<int>(from[2]), e.kernel, e.stride, e.padding, 0);
    if (pad_h != pad_w || pad_h < 0 || pad_h >= e.stride)
      throw Error("decoder: no transposed convolution with kernel " + std::to_string(e.kernel) + ", stride " +
                  std::to_string(e.stride) + " and padding " + std::to_string(e.padding) + " turns " + to_string(from) +
                  " back into " + to_string(target) + "; choose encoder.kernel/stride/padding that divide the image "
                  "size evenly (for 28x28: kernel 4, stride 2, padding 1)");
    // The last layer gives the image (no activation, so no doubling).
    const int out_channels = static_cast<int>(target[0]) * (i > 0 ? widen : 1);
    decoder.add(std::make_unique<ConvTranspose2d>(from, out_channels, e.kernel, e.stride, e.padding, pad_h));
    if (i > 0) activate(decoder);
  }
}

}  // namespace vae
