#!/bin/bash
# A Ray cluster inside a Slurm allocation (Ray's documented pattern: the head on the first
# machine, one worker per other machine, each `ray start --block` kept alive by its srun), then
# one dlemu run over it. Submit from the project folder after `make setup` on a filesystem every
# machine sees (the .venv and the code; the run folder itself needs no sharing):
#
#   sbatch scripts/slurm_ray.sh +experiment=paper_cifar10
#
# Arguments are hydra overrides for the run. Change the #SBATCH lines to your cluster.
#SBATCH --job-name=dlemu
#SBATCH --nodes=4
#SBATCH --exclusive
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=dlemu-%j.out
set -euo pipefail

PYTHON=${PYTHON:-.venv/bin/python}
RAY=${RAY:-.venv/bin/ray}
PORT=${RAY_PORT:-6379}

mapfile -t machines < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head=${machines[0]}
# The head's address on the cluster's network (the first one if the machine has several).
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
echo "Ray head: $head ($head_ip:$PORT), workers: ${machines[*]:1}"

srun --nodes=1 --ntasks=1 -w "$head" \
    "$RAY" start --head --node-ip-address="$head_ip" --port="$PORT" \
    --num-cpus="$SLURM_CPUS_PER_TASK" --include-dashboard=false --block &
sleep 10  # the head must be up before a worker tries to join it

for machine in "${machines[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$machine" \
        "$RAY" start --address="$head_ip:$PORT" --num-cpus="$SLURM_CPUS_PER_TASK" --block &
    sleep 5
done

# The launcher runs here, on the head's machine: its control socket binds the address Ray
# gives this machine (launch.host=node-ip), every node binds its own machine's (tcp://node-ip),
# and CURVE is on (auto: nodes bind off loopback).
"$PYTHON" -m launcher launch.backend=ray ray.address="$head_ip:$PORT" \
    launch.host=node-ip transport.bind=tcp://node-ip "$@"
