"""Where MAE-style PyTorch state dicts keep each weight: facebookresearch/mae's (timm) names and
Hugging Face ViTMAEForPreTraining's, in the spellings transformers has written them.

A layout names modules; a Linear, conv or LayerNorm module NAME stores NAME.weight and NAME.bias.
Block names hold '{i}', the block index.
"""
import dataclasses
import re

FORMATS = ("mae", "hf")


@dataclasses.dataclass(frozen=True)
class Layout:
  format: str  # one of FORMATS
  description: str
  cls: str
  pos_embed: str
  patch_embed: str  # the conv over patches
  encoder_block: str
  norm: str  # the encoder's final LayerNorm
  decoder_embed: str
  mask_token: str
  decoder_pos_embed: str
  decoder_block: str
  decoder_norm: str
  decoder_pred: str
  # Inside a block:
  norm1: str
  qkv: tuple[str, ...]  # one fused projection, or query, key and value (concatenated in order)
  attn_out: str
  norm2: str
  fc1: str
  fc2: str

  def probe_names(self) -> list[str]:
    """Tensor names a checkpoint in this layout has; the layout with most of them is taken."""
    blocks = [self.encoder_block.format(i=0), self.decoder_block.format(i=0)]
    inside = [self.norm1, self.qkv[0], self.attn_out, self.fc1]
    return ([self.cls, self.pos_embed, f"{self.patch_embed}.weight", f"{self.norm}.weight",
             f"{self.decoder_embed}.weight", self.mask_token]
            + [f"{block}{name}.weight" for block in blocks for name in inside])


MAE = Layout(
    format="mae", description="facebookresearch/mae (timm names)",
    cls="cls_token", pos_embed="pos_embed", patch_embed="patch_embed.proj",
    encoder_block="blocks.{i}.", norm="norm", decoder_embed="decoder_embed",
    mask_token="mask_token", decoder_pos_embed="decoder_pos_embed",
    decoder_block="decoder_blocks.{i}.", decoder_norm="decoder_norm", decoder_pred="decoder_pred",
    norm1="norm1", qkv=("attn.qkv",), attn_out="attn.proj", norm2="norm2", fc1="mlp.fc1",
    fc2="mlp.fc2")

# transformers 4.x: the names of the models on the Hugging Face Hub.
HF = Layout(
    format="hf", description="Hugging Face ViTMAEForPreTraining",
    cls="vit.embeddings.cls_token", pos_embed="vit.embeddings.position_embeddings",
    patch_embed="vit.embeddings.patch_embeddings.projection",
    encoder_block="vit.encoder.layer.{i}.", norm="vit.layernorm",
    decoder_embed="decoder.decoder_embed", mask_token="decoder.mask_token",
    decoder_pos_embed="decoder.decoder_pos_embed", decoder_block="decoder.decoder_layers.{i}.",
    decoder_norm="decoder.decoder_norm", decoder_pred="decoder.decoder_pred",
    norm1="layernorm_before",
    qkv=("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    attn_out="attention.output.dense", norm2="layernorm_after", fc1="intermediate.dense",
    fc2="output.dense")

HF_LAYOUTS = (
    HF,
    # transformers 5's save_pretrained writes the 4.x names, but the decoder blocks so.
    dataclasses.replace(HF, description="Hugging Face ViTMAEForPreTraining (transformers 5)",
                        decoder_block="decoder.decoder_encoder.layer.{i}."),
    # transformers 5's module names: its state_dict(), saved with torch.save.
    dataclasses.replace(HF, description="Hugging Face ViTMAEForPreTraining (transformers 5 "
                        "state_dict)", encoder_block="vit.layers.{i}.",
                        qkv=("attention.q_proj", "attention.k_proj", "attention.v_proj"),
                        attn_out="attention.o_proj", fc1="mlp.fc1", fc2="mlp.fc2"),
)
LAYOUTS = (MAE,) + HF_LAYOUTS


def block_indices(names, block: str) -> set[int]:
  """Indices i of the blocks named `block` (a layout's '...{i}.') that any of `names` is in."""
  pattern = re.compile("^" + re.escape(block).replace(re.escape("{i}"), r"(\d+)"))
  return {int(m.group(1)) for m in map(pattern.match, names) if m}


def layouts_of(format_name: str | None) -> list[Layout]:
  """The layouts of `format_name`, or all."""
  return [layout for layout in LAYOUTS if format_name in (None, layout.format)]


def detect_layout(names, format_name: str | None = None) -> Layout | None:
  """The layout (of `format_name`, or any) most of whose probe names are among `names`; None
  when no layout's are."""
  names = set(names)
  score = lambda layout: sum(name in names for name in layout.probe_names())
  best = max(layouts_of(format_name), key=score)
  return best if score(best) else None
