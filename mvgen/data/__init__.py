"""Procedural multiview data: captions -> canonical coloured meshes -> RGBA orbit renders -> dataset folders.

Modules (imported on demand, so ``import mvgen.data`` stays light):
    captions   caption grammar, vocabulary, ObjectSpec, train/held-out split
    objects    build_mesh(spec) -> trimesh.Trimesh (builders in objects_home.py, objects_world.py)
    render     render_rgba(mesh, cameras) by Embree ray casting, composite_white
    writer     object folders, index.jsonl, preview contact sheet (on-disk layout: design.md section 5)
    generate   DatasetConfig, generate_dataset (sampling, cameras, workers, resume)
    cli, bench `mvgen dataset` and `mvgen bench dataset`
"""
