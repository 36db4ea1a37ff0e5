# LoRA through Hugging Face peft, with HarMA's loss.
method = dict(type="lora", rank=8, alpha=16)
loss = dict(type="harma")
