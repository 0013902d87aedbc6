"""The packed e5 file (E5S1, 4-bit Q4_0 blocks) in numpy, the layer-8 dump, the eval's vector cache and SMP2017's
splits: helpers for finetune.py and dense_heads.py (bench/smp2017-develop/README.md)."""
import glob, os, struct, numpy as np
def f16(b): return np.frombuffer(b,dtype='<f2')
def load(path):
    d=open(path,'rb').read();p=0
    def take(n):
        nonlocal p; out=d[p:p+n]; p+=n; return out
    u32=lambda: struct.unpack('<I',take(4))[0]
    i32=lambda: struct.unpack('<i',take(4))[0]
    u64=lambda: struct.unpack('<Q',take(8))[0]
    u16=lambda: struct.unpack('<H',take(2))[0]
    f32=lambda: struct.unpack('<f',take(4))[0]
    assert take(4)==b'E5S1'
    u32();hidden=i32();nl=i32();heads=i32();ffn=i32();vocab=i32();maxpos=i32();i32();eps=f32();block=i32()
    npieces=i32();u32();u32();u32();u32();bloblen=u64()
    take(4*(npieces+1));take(4*npieces);take(bloblen)
    nnorm=i32();normlen=u32();take(normlen)
    n=i32();dir={}
    for _ in range(n):
        nl_=u16();name=take(nl_).decode();dt=d[p];p+=1;vals=u32();off=u64();by=u64();dir[name]=(dt,vals,off,by)
    def vec(name):
        dt,vals,off,by=dir[name];assert dt==0;return np.frombuffer(d,dtype='<f4',count=vals,offset=off).copy()
    def mat(name,out,inp):
        dt,vals,off,by=dir[name];assert dt==1 and vals==out*inp
        raw=np.frombuffer(d,dtype=np.uint8,count=by,offset=off).reshape(-1,18)
        scale=raw[:,:2].copy().view('<f2').astype(np.float32)[:,0]
        q=raw[:,2:]
        lo=(q&15).astype(np.int8)-8;hi=(q>>4).astype(np.int8)-8
        w=np.concatenate([lo,hi],axis=1).astype(np.float32)*scale[:,None]
        return w.reshape(out,inp)
    layers=[]
    for l in range(nl):
        g=lambda s: f'l{l}.{s}'
        layers.append(dict(q=(mat(g('q.w'),hidden,hidden),vec(g('q.b'))),k=(mat(g('k.w'),hidden,hidden),vec(g('k.b'))),v=(mat(g('v.w'),hidden,hidden),vec(g('v.b'))),
            ao=(mat(g('ao.w'),hidden,hidden),vec(g('ao.b'))),aln=(vec(g('aln.w')),vec(g('aln.b'))),fi=(mat(g('fi.w'),ffn,hidden),vec(g('fi.b'))),
            fo=(mat(g('fo.w'),hidden,ffn),vec(g('fo.b'))),oln=(vec(g('oln.w')),vec(g('oln.b')))))
    return dict(hidden=hidden,heads=heads,eps=eps,layers=layers)
def dump(path):
    d=open(path,'rb').read();p=0;out=[]
    while p<len(d):
        n=struct.unpack_from('<I',d,p)[0];p+=4
        out.append(np.frombuffer(d,dtype='<f4',count=n*384,offset=p).reshape(n,384));p+=4*n*384
    return out
# SMP2017 in the shared data folder beside the repository.
D=os.path.join(os.path.dirname(os.path.abspath(__file__)),'../../../shared/data/smp_ecdt_zh/smp2017_task1')
def split(name):
    X=[];Y=[]
    for f in sorted(glob.glob(f'{D}/{name}/{name}_*.txt')):
        lab=os.path.basename(f)[len(name)+1:-4]
        for line in open(f,encoding='utf-8-sig'):
            t=line.strip()
            if t: X.append(t);Y.append(lab)
    return X,Y
def cache(path):
    b=open(path,'rb').read();at=0;m={}
    while at<len(b):
        n=struct.unpack_from('<I',b,at)[0];at+=4;t=b[at:at+n].decode();at+=n
        d=struct.unpack_from('<I',b,at)[0];at+=4;m[t]=np.frombuffer(b,dtype='<f4',count=d,offset=at);at+=4*d
    return m
def write_cache(path,m):
    """Writes `m` (text -> vector) in the eval's vector-cache layout, the inverse of `cache`."""
    os.makedirs(os.path.dirname(path) or '.',exist_ok=True)
    with open(path,'wb') as fh:
        for t,v in m.items():
            b=t.encode();fh.write(struct.pack('<I',len(b)));fh.write(b);fh.write(struct.pack('<I',len(v)));fh.write(np.asarray(v,'<f4').tobytes())
