cd /work/main
EXP=/tmp/mtl_transfer/transfer_classes_offline_minilm
python3 -u -m mtl_jax.taskemb --tasks=chatterbot_pair,vader_pair,wnut16_qa,wnut16_ner,chatterbot_choice \
  --methods=textemb,taskemb --task_module=tasks.offline_pairs \
  --taskemb_runs="$EXP/runs/source__{task}__seed{seed}" --seeds=0,1,2 \
  --taskemb_target_runs="$EXP/runs/target__none__to__{task}__n500__seed{seed}" --target_regime=500 \
  --max_examples=1000 --transfer_matrix=$EXP/transfer_matrix.json --regime=n500 \
  --out_dir=/tmp/work/taskemb_classes
