"""Side-by-side benchmarks of hpckernel, plain ipykernel and ipyparallel (issue 9).

``python -m benchmarks.run [--quick]`` — see benchmarks/README.md.
"""
