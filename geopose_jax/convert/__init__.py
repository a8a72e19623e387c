"""Import of the originals' PyTorch checkpoints into our Flax variable trees.

torch_pickle: reading `torch.save` files (zip and legacy) into numpy, without PyTorch.
torch_io: reading `.pth` / `.npz` state dicts and the generic name/layout mapping.
rhodin: Rhodin et al.'s NVS network and pose head (`network_best_val_t1.pth`).
torchvision_resnet: ImageNet ResNet-50 (NVS encoder) and ResNet-18 (perceptual loss).
rie: RIE and VideoPose3D checkpoints (`gt_pretrained.bin`, `cpn_pretrained.bin`, ...).
None of them needs PyTorch.
"""
