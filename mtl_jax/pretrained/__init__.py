"""Pretrained BERT-family encoders (HF-layout checkpoints) as the trunk of any sharing strategy."""
