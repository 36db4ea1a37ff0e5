# HarMA as the paper describes it: each shared module is used by both towers.
_base_ = ["./harma.py"]
method = dict(shared_towers=("image", "text"))
