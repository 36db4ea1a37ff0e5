# Zero-shot: the backbone as it is; nothing is trained.
method = dict(type="frozen")
loss = dict(type="harma")
